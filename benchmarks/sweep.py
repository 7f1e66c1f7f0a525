"""What a sweep in one compiled call saves: K configs x S seeds of ppo_rnn as one
``--sweep learning-rate=...`` run, against the same K configs as K separate runs of S seeds
(each its own process, as a user would launch them one after another), side by side.

    python benchmarks/sweep.py --configs 4 8 --repeats 2

Each repeat runs, for every K, the K separate runs and then the sweep (ABAB across repeats);
times are medians over repeats: wall time of the processes (start-up, compiling, training,
writing results), and the compile and training seconds each run reports in its summary.json.
ppo_rnn's default network and env (GRU, position-only CartPole) at a short budget. Results go
to benchmarks/results/sweep_<platform>.json and .md.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

from benchmarks.machine import machine_info
from memorax.results import atomic_write, write_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FLAGS = ["--total-timesteps", "10000", "--eval-every", "10000", "--num-seeds", "2"]


def learning_rates(k: int) -> list[str]:
    return [f"{3e-4 * 1.5**i:.3g}" for i in range(k)]


def run(args: list[str], output_dir: Path) -> dict:
    """One ppo_rnn process: its wall seconds and the compile and run seconds it reports."""
    command = [sys.executable, str(REPO / "algorithms" / "ppo_rnn.py"), *FLAGS, *args]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "--output-dir", str(output_dir)], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    (run_dir,) = [p for p in output_dir.iterdir() if (p / "summary.json").is_file()][-1:]
    summary = json.loads((run_dir / "summary.json").read_text())
    for path in output_dir.iterdir():  # keep the folder empty for the next run
        subprocess.run(["rm", "-rf", str(path)], check=True)
    return {
        "wall": wall,
        "compile": summary["compile_seconds"],
        "run": summary["run_seconds"],
        "iqm": summary["final_eval_return_iqm"],
    }


def measure(k: int, output_dir: Path) -> dict:
    separate = [run(["--learning-rate", lr], output_dir) for lr in learning_rates(k)]
    sweep = run(["--sweep", "learning-rate=" + ",".join(learning_rates(k))], output_dir)
    total = {key: sum(r[key] for r in separate) for key in ("wall", "compile", "run")}
    return {"separate": total, "sweep": {key: sweep[key] for key in ("wall", "compile", "run")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    samples: dict[int, list[dict]] = {k: [] for k in args.configs}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for k in args.configs:
                samples[k].append(measure(k, Path(tmp)))
                print(f"repeat {repeat + 1}, K = {k}: {samples[k][-1]}", flush=True)
    rows = []
    for k, measured in samples.items():
        row = {"configs": k, "seeds": 2}
        for way in ("separate", "sweep"):
            for key in ("wall", "compile", "run"):
                row[f"{way}_{key}_s"] = statistics.median(m[way][key] for m in measured)
        row["wall_speedup"] = row["separate_wall_s"] / row["sweep_wall_s"]
        rows.append(row)
    platform = jax.devices()[0].platform
    record = {"machine": machine_info(), "flags": FLAGS, "repeats": args.repeats, "rows": rows}
    write_json(RESULTS / f"sweep_{platform}.json", record)
    lines = [
        f"# A sweep in one compiled call against separate runs ({platform})",
        "",
        f"ppo_rnn defaults (GRU, CartPole-P-v1) with `{' '.join(FLAGS)}`; K learning rates, "
        f"2 seeds each. Medians of {args.repeats} repeats (ABAB); machine: "
        f"{record['machine']['cpu']}, {record['machine']['cpu_count']} cores, "
        f"jax {record['machine']['jax']}, {record['machine']['date']}.",
        "",
        "| K configs | K separate runs: wall / compile / train (s) | one sweep: wall / compile "
        "/ train (s) | wall-time ratio |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['configs']} | {row['separate_wall_s']:.1f} / "
            f"{row['separate_compile_s']:.1f} / {row['separate_run_s']:.1f} | "
            f"{row['sweep_wall_s']:.1f} / {row['sweep_compile_s']:.1f} / "
            f"{row['sweep_run_s']:.1f} | {row['wall_speedup']:.2f}x |"
        )
    atomic_write(RESULTS / f"sweep_{platform}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
