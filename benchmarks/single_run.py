"""What the seed vmap costs a single run, and that run_seeds no longer pays it: ppo_rnn at the
reference configuration of benchmarks/ppo_throughput.py (PureJaxRL's recurrent PPO), one seed,
compiled three ways and timed side by side in one process:

- ``vmap``: ``jax.jit(jax.vmap(run))`` over a batch of one key (what run_seeds compiled before);
- ``run_seeds``: ``memorax.experiment.run_seeds`` (one run per device: no vmap);
- ``jit``: ``jax.jit(run)`` on the key itself, the reference.

    python benchmarks/single_run.py --updates 244 --repeats 3

Run time is the median of ``--repeats`` rounds, each running the three compiled calls in turn.
Results go to benchmarks/results/single_run_<platform>.json and .md.
"""

import argparse
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from algorithms.ppo_rnn import make_agent
from benchmarks.machine import machine_info
from benchmarks.ppo_throughput import reference_config
from memorax.environments import make
from memorax.experiment import run_seeds, seed_keys, shard_seeds
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=244, help="PPO rounds of 4 x 128 steps")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    steps = args.updates * 4 * 128
    cfg = reference_config(1)
    cfg = type(cfg)(**{**vars(cfg), "total_timesteps": steps, "eval_every": steps})
    env, env_params = make(cfg.env_id)
    agent = make_agent(cfg, env, env_params)

    def run(key):
        key, state = agent.init(key)
        _, state, transitions = agent.train(key, state, cfg.total_timesteps)
        return transitions.metrics["loss"][-1]

    keys = shard_seeds(seed_keys(0, 1))
    ways = {}
    start = time.perf_counter()
    ways["vmap"] = (jax.jit(jax.vmap(run)).lower(keys).compile(), keys)
    compile_seconds = {"vmap": time.perf_counter() - start}
    start = time.perf_counter()
    ways["jit"] = (jax.jit(run).lower(keys[0]).compile(), keys[0])
    compile_seconds["jit"] = time.perf_counter() - start
    losses = {name: float(np.ravel(call(x))[0]) for name, (call, x) in ways.items()}
    _, timing = run_seeds(run, keys)  # compiles and runs once
    compile_seconds["run_seeds"] = timing.compile_seconds
    seconds: dict[str, list[float]] = {"vmap": [], "run_seeds": [], "jit": []}
    for _ in range(args.repeats):
        for name in seconds:
            if name == "run_seeds":
                outputs, timing = run_seeds(run, keys)  # its own timing, after compiling
                seconds[name].append(timing.run_seconds)
                losses[name] = float(np.ravel(outputs)[0])
                continue
            call, x = ways[name]
            begin = time.perf_counter()
            jax.block_until_ready(call(x))
            seconds[name].append(time.perf_counter() - begin)
    rows = [
        {
            "way": name,
            "compile_s": compile_seconds[name],
            "run_s": statistics.median(values),
            "env_steps_per_s": steps / statistics.median(values),
            "final_loss": losses[name],
        }
        for name, values in seconds.items()
    ]
    platform = jax.devices()[0].platform
    record = {"machine": machine_info(), "env_steps": steps, "repeats": args.repeats, "rows": rows}
    write_json(RESULTS / f"single_run_{platform}.json", record)
    reference = rows[2]["run_s"]
    lines = [
        f"# One run without the seed vmap ({platform})",
        "",
        f"ppo_rnn at the reference config of ppo_throughput.py, 1 seed, {steps:,} env steps; "
        f"medians of {args.repeats} rounds; {record['machine']['cpu']}, "
        f"{record['machine']['cpu_count']} cores, jax {record['machine']['jax']}, "
        f"{record['machine']['date']}. `python benchmarks/single_run.py --updates "
        f"{args.updates} --repeats {args.repeats}`",
        "",
        "| compiled as | compile (s) | run (s) | env steps/s | run time / jit's | final loss |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['way']} | {row['compile_s']:.1f} | {row['run_s']:.2f} | "
            f"{row['env_steps_per_s']:,.0f} | {row['run_s'] / reference:.2f} | "
            f"{row['final_loss']:.6g} |"
        )
    atomic_write(RESULTS / f"single_run_{platform}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
