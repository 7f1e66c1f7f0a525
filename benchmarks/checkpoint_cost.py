"""What --checkpoint-every costs: each script's default run shape (default networks, envs and
replay buffer), trained for a short budget three ways, side by side in one process:

- ``single call``: no checkpoints (today's one compiled call);
- ``every period``: a checkpoint after every evaluation period (the most often allowed);
- ``twice``: two segments, one checkpoint half-way (and one at the end).

    python benchmarks/checkpoint_cost.py --repeats 3

Run time is the median of ``--repeats`` runs after compiling (it includes writing the
checkpoints, replay buffers and all); the state size is that of one saved checkpoint. Results go
to benchmarks/results/checkpoint_cost_<platform>.json and .md.
"""

import argparse
import statistics
import tempfile
from functools import partial
from pathlib import Path

import jax

from algorithms import dqn_mamba, ppo_rnn, sac_s5
from benchmarks.machine import machine_info
from memorax.checkpoints import Checkpoints
from memorax.environments import make
from memorax.experiment import seed_keys, train_seeds
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
NUM_SEEDS = 2
# Short budgets with each script's defaults otherwise: 4 evaluation periods per run.
RUNS = {
    "ppo_rnn": (
        ppo_rnn,
        ppo_rnn.PPOConfig(total_timesteps=32_000, eval_every=8_000, num_seeds=NUM_SEEDS),
    ),
    "dqn_mamba": (
        dqn_mamba,
        dqn_mamba.DQNConfig(
            total_timesteps=6_160, learning_starts=2_000, eval_every=1_040, num_seeds=NUM_SEEDS
        ),
    ),
    "sac_s5": (
        sac_s5,
        sac_s5.SACConfig(
            total_timesteps=6_000, learning_starts=2_000, eval_every=1_000, num_seeds=NUM_SEEDS
        ),
    ),
}


def measure(name: str, repeats: int) -> list[dict]:
    module, cfg = RUNS[name]
    rows = []
    for label, periods in (("single call", 0), ("every period", 1), ("twice", 2)):
        every = periods if periods < 2 else cfg.num_evaluations // 2
        env, env_params = make(cfg.env_id)
        agent = module.make_agent(cfg, env, env_params)
        seconds, state_bytes, compile_seconds = [], 0, 0.0
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as run_dir:
                checkpoints = Checkpoints(Path(run_dir), every, name)
                _, _, timing = train_seeds(
                    partial(module.start, agent), partial(module.train_periods, agent),
                    seed_keys(0, NUM_SEEDS), cfg.num_evaluations, checkpoints,
                )  # fmt: skip
                sizes = [p.stat().st_size for p in checkpoints.folder.glob("state-*.npz")]
                state_bytes = max(sizes, default=0)
            seconds.append(timing.run_seconds)
            compile_seconds = timing.compile_seconds
        steps = NUM_SEEDS * (cfg.training_steps + getattr(cfg, "learning_starts", 0))
        rows.append(
            {
                "script": name,
                "checkpoints": label,
                "segments": cfg.num_evaluations // every if every else 1,
                "env_steps": steps,
                "compile_seconds": compile_seconds,
                "run_seconds": seconds,
                "run_seconds_median": statistics.median(seconds),
                "state_megabytes": state_bytes / 2**20,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [row for name in args.scripts for row in measure(name, args.repeats)]
    platform = jax.devices()[0].platform
    machine = machine_info()
    write_json(RESULTS / f"checkpoint_cost_{platform}.json", {"machine": machine, "rows": rows})
    lines = [
        f"# --checkpoint-every: run time with and without checkpoints ({platform})",
        "",
        f"{NUM_SEEDS} seeds, each script's default networks and buffer, short budgets; run time "
        f"is the median of {args.repeats} runs after compiling, checkpoint writes included.",
        f"Machine: {machine}",
        "",
        "| script | checkpoints | segments | run s (median) | vs single call | state MB |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        single = next(
            r for r in rows if r["script"] == row["script"] and r["checkpoints"] == "single call"
        )
        ratio = row["run_seconds_median"] / single["run_seconds_median"]
        lines.append(
            f"| {row['script']} | {row['checkpoints']} | {row['segments']} | "
            f"{row['run_seconds_median']:.2f} | {ratio:.2f}x | {row['state_megabytes']:.1f} |"
        )
    atomic_write(RESULTS / f"checkpoint_cost_{platform}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
