"""Proof that memory works: each algorithm script with memory torsos and its memoryless twin,
greedy (deterministic) evaluation, 4 seeds in one run, default flags except the task and budget.

    python benchmarks/learning.py ppo_rnn                  # every row of ppo_rnn's table
    python benchmarks/learning.py ppo_rnn --rows CartPole-P-v1:gru CartPole-P-v1:mlp
    python benchmarks/learning.py dqn_mamba --rows CartPole-P-v1:mamba:prioritised

Each row runs algorithms/<script>.py as a user would and keeps its summary.json and
learning_curve.png under benchmarks/results/<script>_learning/; the table (JSON and Markdown) is
merged row by row, so rows can be run separately. A row is task:torso, plus :prioritised for
dqn_mamba's prioritised replay.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import machine_info
from memorax.results import atomic_write, write_json

REPO = Path(__file__).resolve().parents[1]
NUM_SEEDS = 4
BUDGETS = {
    "ppo_rnn": {"CartPole-P-v1": 500_000, "RepeatPreviousEasy": 2_000_000},
    "dqn_mamba": {"CartPole-P-v1": 500_000, "RepeatPreviousEasy": 1_000_000},
    "sac_s5": {"Pendulum-v1": 30_000, "Pendulum-P-v1": 100_000},
}
ROWS = {
    "ppo_rnn": [
        "CartPole-P-v1:gru", "CartPole-P-v1:mlp", "RepeatPreviousEasy:gru",
        "RepeatPreviousEasy:mlp", "CartPole-P-v1:s5", "CartPole-P-v1:lru", "CartPole-P-v1:mamba",
        "CartPole-P-v1:attention", "CartPole-P-v1:lstm", "CartPole-P-v1:mgu",
        "CartPole-P-v1:elman", "CartPole-P-v1:indrnn", "CartPole-P-v1:mingru",
        "CartPole-P-v1:framestack", "CartPole-P-v1:mamba2", "CartPole-P-v1:attention_rope",
        "CartPole-P-v1:attention_nope", "CartPole-P-v1:gtrxl", "CartPole-P-v1:ffm",
        "CartPole-P-v1:linear_attention", "CartPole-P-v1:linear_attention_decay",
        "CartPole-P-v1:deltanet", "CartPole-P-v1:gated_deltanet", "CartPole-P-v1:mlstm",
        "CartPole-P-v1:slstm",
    ],
    "dqn_mamba": [
        "CartPole-P-v1:mamba", "CartPole-P-v1:mlp", "RepeatPreviousEasy:mamba",
        "RepeatPreviousEasy:mlp", "CartPole-P-v1:mamba:prioritised",
        "CartPole-P-v1:mlp:prioritised", "RepeatPreviousEasy:mamba:prioritised",
        "RepeatPreviousEasy:mlp:prioritised", "CartPole-P-v1:gru",
    ],
    "sac_s5": [
        "Pendulum-v1:mlp", "Pendulum-P-v1:s5", "Pendulum-P-v1:mlp", "Pendulum-v1:s5",
    ],
}  # fmt: skip


EVALUATION = {
    "ppo_rnn": "greedy evaluation",
    "dqn_mamba": "greedy evaluation",
    "sac_s5": "deterministic evaluation (the mean action)",
}


def results_dir(script: str) -> Path:
    return REPO / "benchmarks" / "results" / f"{script.split('_')[0]}_learning"


def run_row(script: str, row: str) -> dict:
    env_id, torso, *options = row.split(":")
    budget = BUDGETS[script][env_id]
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            sys.executable, str(REPO / "algorithms" / f"{script}.py"), "--env-id", env_id,
            "--torso", torso, "--total-timesteps", str(budget),
            "--num-seeds", str(NUM_SEEDS), "--output-dir", output_dir,
            *(f"--{option}" for option in options),
        ]  # fmt: skip
        print("+", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
        (run_dir,) = Path(output_dir).iterdir()
        name = row.replace(":", "-")
        results = results_dir(script)
        results.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "learning_curve.png", results / f"{name}.png")
        summary = json.loads((run_dir / "summary.json").read_text())
        write_json(results / f"{name}.json", summary)
    replay = "prioritised" if "prioritised" in options else "uniform"
    machine = machine_info()
    return {
        "row": row, "env_id": env_id, "torso": torso, "budget": budget, "date": machine["date"],
        "machine": f"{machine['cpu']}, {machine['cpu_count']} cores",
        **({"replay": replay} if script == "dqn_mamba" else {}), **summary,
    }  # fmt: skip


def write_table(script: str, rows: dict[str, dict]) -> None:
    ordered = [rows[key] for key in ROWS[script] if key in rows]
    machine = machine_info()
    results = results_dir(script)
    write_json(results / "table.json", {"machine": machine, "rows": ordered})
    replay = script == "dqn_mamba"
    lines = [
        "| task | torso |" + (" replay |" if replay else "") + " env steps | final "
        f"{EVALUATION[script].split()[0]} return, IQM [95% CI] | per seed | compile (s) | "
        "env steps/s | run on |",
        "|---|---|" + ("---|" if replay else "") + "---:|---|---|---:|---:|---|",
    ]
    for row in ordered:
        low, high = row["final_eval_return_iqm_ci"]
        per_seed = ", ".join(f"{value:.4g}" for value in row["final_eval_return_per_seed"])
        lines.append(
            f"| {row['env_id']} | {row['torso']} | "
            + (f"{row['replay']} | " if replay else "")
            + f"{row['budget']:,} | "
            f"{row['final_eval_return_iqm']:.2f} [{low:.2f}, {high:.2f}] | {per_seed} | "
            f"{row['compile_seconds']:.0f} | {row['env_steps_per_second']:,.0f} | {row['date']}, "
            f"{row['machine']} |"
        )
    lines += [
        "",
        f"{NUM_SEEDS} seeds per row in one compiled run, {EVALUATION[script]} on 32 "
        "episodes; "
        f"default flags of algorithms/{script}.py otherwise; env steps/s counts every seed's "
        f"steps over the whole run (machines drift: compare speeds only within one date and "
        f"machine). jax {machine['jax']}.",
    ]
    atomic_write(results / "table.md", ("\n".join(lines) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script", choices=sorted(ROWS))
    parser.add_argument("--rows", nargs="+", help="rows to run (default: all of the script's)")
    args = parser.parse_args()
    table_path = results_dir(args.script) / "table.json"
    rows = {}
    if table_path.exists():
        table = json.loads(table_path.read_text())
        for row in table["rows"]:
            # Rows from before rows were dated, or named their machine: the table's machine was
            # theirs (one machine wrote every such table).
            row.setdefault("date", table["machine"]["date"])
            machine = table["machine"]
            row.setdefault("machine", f"{machine['cpu']}, {machine['cpu_count']} cores")
            rows[row.get("row", f"{row['env_id']}:{row['torso']}")] = row
    for key in args.rows or ROWS[args.script]:
        if key not in ROWS[args.script]:
            raise ValueError(f"--rows {key!r} is not a row of the table; rows: {ROWS[args.script]}")
        rows[key] = run_row(args.script, key)
        write_table(args.script, rows)


if __name__ == "__main__":
    main()
