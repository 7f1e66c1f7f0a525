"""Throughput of algorithms/ppo_rnn.py at the reference configuration of the best-known single-file
peer (PureJaxRL's recurrent PPO): CartPole-v1, 4 envs x 128 steps, Dense 128 -> GRU 128 -> heads,
4 epochs x 4 minibatches, 976 updates (499,712 env steps per seed), no evaluation.

    python benchmarks/ppo_throughput.py --seeds 1 4 16 --repeats 3

Compile time is measured once per seed count; run time is the median of ``--repeats`` runs of the
compiled call. Results go to benchmarks/results/ppo_throughput_<platform>.json and .md.
"""

import argparse
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from algorithms.ppo_rnn import PPOConfig, make_agent
from benchmarks.machine import machine_info
from memorax.environments import make
from memorax.experiment import seed_keys, shard_seeds
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
UPDATES = 976


def reference_config(num_seeds: int) -> PPOConfig:
    # Shared torso like the peer's network (one embedding and GRU for actor and critic).
    return PPOConfig(
        env_id="CartPole-v1", torso="gru", hidden_size=128, num_envs=4, num_steps=128,
        total_timesteps=UPDATES * 4 * 128, update_epochs=4, num_minibatches=4,
        learning_rate=2.5e-4, shared_torso=True, eval_every=UPDATES * 4 * 128, num_seeds=num_seeds,
    )  # fmt: skip


def measure(num_seeds: int, repeats: int) -> dict:
    cfg = reference_config(num_seeds)
    env, env_params = make(cfg.env_id)
    agent = make_agent(cfg, env, env_params)

    def run(key):
        key, state = agent.init(key)
        _, state, transitions = agent.train(key, state, cfg.total_timesteps)
        return transitions.metrics["loss"][-1]

    keys = shard_seeds(seed_keys(0, num_seeds))
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(run)).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    run_seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        run_seconds.append(time.perf_counter() - start)
    median = statistics.median(run_seconds)
    steps = num_seeds * cfg.total_timesteps
    return {
        "num_seeds": num_seeds,
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "median_run_seconds": median,
        "env_steps": steps,
        "env_steps_per_second": steps / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    platform = jax.devices()[0].platform
    rows = []
    for num_seeds in args.seeds:
        row = measure(num_seeds, args.repeats)
        rows.append(row)
        print(
            f"{num_seeds:>5} seeds: compile {row['compile_seconds']:6.1f} s, "
            f"{row['env_steps_per_second']:>12,.0f} env steps/s (median of {args.repeats})",
            flush=True,
        )
    results = {"machine": machine_info(), "config": vars(reference_config(1)), "rows": rows}
    write_json(RESULTS / f"ppo_throughput_{platform}.json", results)
    lines = [
        f"# ppo_rnn throughput, reference configuration ({platform})",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cpu_count']} cores, "
        f"jax {results['machine']['jax']}, {results['machine']['date']}.",
        "",
        "| seeds | compile (s) | median run (s) | env steps/s | per seed |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['num_seeds']} | {row['compile_seconds']:.1f} | "
            f"{row['median_run_seconds']:.1f} | {row['env_steps_per_second']:,.0f} | "
            f"{row['env_steps_per_second'] / row['num_seeds']:,.0f} |"
        )
    atomic_write(RESULTS / f"ppo_throughput_{platform}.md", ("\n".join(lines) + "\n").encode())
    print(np.round([row["env_steps_per_second"] for row in rows]))


if __name__ == "__main__":
    main()
