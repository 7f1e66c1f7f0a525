"""The memory zoo at a glance: one row per ``--torso``, from what is measured and tested elsewhere.

    python -m benchmarks.zoo          # writes benchmarks/results/zoo.md (the README's zoo table)

Columns: how the model runs over time in training (parallel or sequential, and how); the floats
its carry holds per environment at width 128 and one layer (what acting keeps between steps);
the contract-registry entries that test it (tests/test_contract.py); ppo_rnn's final greedy
return on position-only CartPole at 500k steps, 4 seeds (benchmarks/results/ppo_learning/, the
memoryless twin mlp among the rows); and forward+backward time at T = 1024, batch 32, width 128
against the GRU's in the same run (benchmarks/results/sequence_models_cpu.json). Nothing is
measured here: missing measurements show as a dash, so the table never claims more than was run.
"""

import json
from pathlib import Path

import jax
import numpy as np

from memorax.networks.sequence_models import initialize_carry_of
from memorax.networks.torsos import TORSO_NAMES, make_torso
from memorax.results import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, SPEED_LENGTH = 128, 1024

# How each torso runs over a training sequence, and the paper it follows.
KIND = {
    "gru": ("sequential", "scan", "Cho et al. 2014 (flax's equations, fused)"),
    "lstm": ("sequential", "scan", "Hochreiter & Schmidhuber 1997 (flax's equations, fused)"),
    "mgu": ("sequential", "scan", "Zhou et al. 2016 (flax's equations, hoisted)"),
    "elman": ("sequential", "scan", "Elman 1990 (flax's equations, hoisted)"),
    "indrnn": ("sequential", "scan", "Li et al. 2018"),
    "slstm": ("sequential", "scan", "Beck et al. 2024 (xLSTM)"),
    "mingru": ("parallel", "log-space associative scan", "Feng et al. 2024"),
    "lru": ("parallel", "associative scan; a loop on CPU", "Orvieto et al. 2023"),
    "s5": ("parallel", "associative scan; a loop on CPU", "Smith et al. 2023"),
    "ffm": ("parallel", "associative scan; a loop on CPU", "Morad et al. 2023"),
    "mamba": ("parallel", "chunked selective scan", "Gu & Dao 2023"),
    "mamba2": ("parallel", "chunked matmuls (SSD)", "Dao & Gu 2024"),
    "linear_attention": ("parallel", "chunked matmuls", "Katharopoulos et al. 2020 (FART)"),
    "linear_attention_decay": ("parallel", "chunked matmuls", "the same, a decay per head"),
    "deltanet": ("parallel", "chunked (WY form)", "Schlag et al. 2021; Yang et al. 2024"),
    "gated_deltanet": ("parallel", "chunked (WY form)", "Yang et al. 2025"),
    "mlstm": ("parallel", "chunked or quadratic", "Beck et al. 2024 (xLSTM)"),
    "attention": ("parallel", "window, ALiBi", "Vaswani et al. 2017; Press et al. 2022"),
    "attention_rope": ("parallel", "window, RoPE", "Su et al. 2021"),
    "attention_nope": ("parallel", "window, no positions", "Kazemnejad et al. 2023"),
    "gtrxl": ("parallel", "window, gated residuals", "Parisotto et al. 2020"),
    "framestack": ("parallel", "last 4 inputs", "POPGym's baseline (Morad et al. 2023)"),
    "mlp": ("none", "memoryless twin", ""),
}


def carry_floats(name: str) -> int:
    """Floats (complex numbers count 2) in one environment's carry at width 128, one layer."""
    carry = jax.eval_shape(lambda: initialize_carry_of(make_torso(name, WIDTH), 1))
    leaves = jax.tree.leaves(carry)
    return sum(int(np.prod(a.shape)) * (2 if np.iscomplexobj(np.empty(0, a.dtype)) else 1)
               for a in leaves if np.issubdtype(a.dtype, np.inexact))  # fmt: skip


def learning_cells() -> dict[str, str]:
    path = RESULTS / "ppo_learning" / "table.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    cells = {}
    for row in rows:
        if row["env_id"] == "CartPole-P-v1" and row["budget"] == 500_000:
            low, high = row["final_eval_return_iqm_ci"]
            cells[row["torso"]] = f"{row['final_eval_return_iqm']:.0f} [{low:.0f}, {high:.0f}]"
    return cells


def speed_cells() -> tuple[dict[str, str], str]:
    path = RESULTS / "sequence_models_cpu.json"
    if not path.exists():
        return {}, ""
    record = json.loads(path.read_text())
    seconds = {
        name: point["seconds"]
        for name, points in record["results"].items()
        for point in points
        if point["length"] == SPEED_LENGTH
    }
    if "gru" not in seconds:
        return {}, ""
    cells = {name: f"{value / seconds['gru']:.2f}x" for name, value in seconds.items()}
    machine = record["machine"]
    return cells, f"{machine['cpu']} x{machine['cpu_count']}, {machine['date']}"


def table() -> str:
    from tests.test_contract import ENTRIES_OF_TORSO  # the registry the contract tests run

    learning, (speed, speed_machine) = learning_cells(), speed_cells()
    lines = [
        "| --torso | model | training pass | carry floats (width 128) | contract entries | "
        "CartPole-P, IQM [95% CI] | time vs GRU, T = 1024 |",
        "|---|---|---|---:|---|---|---:|",
    ]
    for name in TORSO_NAMES:
        kind, how, paper = KIND.get(name, ("?", "?", "?"))
        entries = ", ".join(ENTRIES_OF_TORSO.get(name, [])) or "**none**"
        lines.append(
            f"| `{name}` | {paper} | {kind}: {how} | {carry_floats(name):,} | {entries} | "
            f"{learning.get(name, '-')} | {speed.get(name, '-')} |"
        )
    lines += [
        "",
        "Carry: floats per environment between steps (complex counted twice), one layer at width "
        "128. CartPole-P: ppo_rnn on CartPole-P-v1, 500,000 env steps, 4 seeds, greedy "
        "evaluation (benchmarks/results/ppo_learning/); the memoryless twin is the mlp row. Time: "
        "forward+backward, batch 32, width 128, one layer, divided by the GRU's in the same run "
        f"({speed_machine or 'not measured'}; benchmarks/results/sequence_models_cpu.json; a "
        "dash: not in that run yet).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = table()
    atomic_write(RESULTS / "zoo.md", text.encode())
    print(text)


if __name__ == "__main__":
    main()
