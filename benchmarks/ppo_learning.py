"""Proof that memory works: ppo_rnn with each torso and its memoryless twin, greedy evaluation,
4 seeds in one run, default flags except the task and budget.

    python benchmarks/ppo_learning.py                       # every row of the table
    python benchmarks/ppo_learning.py --rows CartPole-P-v1:gru CartPole-P-v1:mlp

Each row runs algorithms/ppo_rnn.py as a user would and keeps its summary.json and
learning_curve.png under benchmarks/results/ppo_learning/; the table (JSON and Markdown) is merged
row by row, so rows can be run separately.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from memorax.experiment import machine_info
from memorax.results import atomic_write, write_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ppo_learning"
BUDGETS = {"CartPole-P-v1": 500_000, "RepeatPreviousEasy": 2_000_000}
ROWS = [
    ("CartPole-P-v1", "gru"),
    ("CartPole-P-v1", "mlp"),
    ("RepeatPreviousEasy", "gru"),
    ("RepeatPreviousEasy", "mlp"),
    ("CartPole-P-v1", "s5"),
    ("CartPole-P-v1", "lru"),
    ("CartPole-P-v1", "mamba"),
    ("CartPole-P-v1", "attention"),
]
NUM_SEEDS = 4


def run_row(env_id: str, torso: str) -> dict:
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            sys.executable, str(REPO / "algorithms" / "ppo_rnn.py"), "--env-id", env_id,
            "--torso", torso, "--total-timesteps", str(BUDGETS[env_id]),
            "--num-seeds", str(NUM_SEEDS), "--output-dir", output_dir,
        ]  # fmt: skip
        print("+", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
        (run_dir,) = Path(output_dir).iterdir()
        name = f"{env_id}-{torso}"
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "learning_curve.png", RESULTS / f"{name}.png")
        summary = json.loads((run_dir / "summary.json").read_text())
        write_json(RESULTS / f"{name}.json", summary)
    return {"env_id": env_id, "torso": torso, "budget": BUDGETS[env_id], **summary}


def write_table(rows: dict[str, dict]) -> None:
    ordered = [rows[key] for key in (f"{e}:{t}" for e, t in ROWS) if key in rows]
    machine = machine_info()
    write_json(RESULTS / "table.json", {"machine": machine, "rows": ordered})
    lines = [
        "| task | torso | env steps | final greedy return, IQM [95% CI] | per seed | "
        "compile (s) | env steps/s |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for row in ordered:
        low, high = row["final_eval_return_iqm_ci"]
        per_seed = ", ".join(f"{value:.4g}" for value in row["final_eval_return_per_seed"])
        lines.append(
            f"| {row['env_id']} | {row['torso']} | {row['budget']:,} | "
            f"{row['final_eval_return_iqm']:.2f} [{low:.2f}, {high:.2f}] | {per_seed} | "
            f"{row['compile_seconds']:.0f} | {row['env_steps_per_second']:,.0f} |"
        )
    lines += [
        "",
        f"{NUM_SEEDS} seeds per row in one compiled run, greedy evaluation on 32 episodes; "
        f"default flags of algorithms/ppo_rnn.py otherwise. Machine: {machine['cpu']}, "
        f"{machine['cpu_count']} cores, jax {machine['jax']}, {machine['date']}.",
    ]
    atomic_write(RESULTS / "table.md", ("\n".join(lines) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=[f"{e}:{t}" for e, t in ROWS])
    args = parser.parse_args()
    table_path = RESULTS / "table.json"
    rows = {}
    if table_path.exists():
        rows = {
            f"{r['env_id']}:{r['torso']}": r for r in json.loads(table_path.read_text())["rows"]
        }
    for key in args.rows:
        env_id, torso = key.split(":")
        if (env_id, torso) not in ROWS:
            raise ValueError(f"--rows {key!r} is not a row of the table; rows: {ROWS}")
        rows[key] = run_row(env_id, torso)
        write_table(rows)


if __name__ == "__main__":
    main()
