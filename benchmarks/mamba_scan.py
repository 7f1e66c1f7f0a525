"""What Mamba's chunked selective scan buys the scripts: ppo_rnn and dqn_mamba with `--torso mamba`
at their default flags, trained with the associative scan (the form before) and with the chunked
scan (the default now), side by side in one process.

    python benchmarks/mamba_scan.py --repeats 2

For each script and scan, one compiled call trains ``--num-seeds`` seeds (vmapped, as the scripts
do) for a fixed number of env steps from a state that has been initialised (and, for dqn_mamba,
warmed up: the buffer filled by ``--learning-starts`` random steps); only that training call is
timed, after one compiling run. Env steps/s counts every seed's steps. Rounds alternate between
the two scans (ABAB) and the median of ``--repeats`` is reported. Results go to
benchmarks/results/mamba_scan_<platform>.json and .md.
"""

import argparse
import functools
import statistics
import time
from pathlib import Path

import jax

import memorax.networks.sequence_models as sequence_models
from benchmarks.machine import machine_info
from memorax.environments import make
from memorax.experiment import seed_keys
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
SCANS = ("associative", "chunked")


def compiled_training(script: str, scan: str, num_seeds: int, steps: int):
    """The script's agent with every Mamba layer on ``scan``, its trained-from state and the
    compiled call that trains it ``steps`` env steps per seed."""
    original = sequence_models.Mamba
    # make_torso imports Mamba when it builds a torso: the override reaches only this agent.
    sequence_models.Mamba = functools.partial(original, scan=scan)
    try:
        if script == "ppo_rnn":
            from algorithms.ppo_rnn import PPOConfig as Config
            from algorithms.ppo_rnn import make_agent
        else:
            from algorithms.dqn_mamba import DQNConfig as Config
            from algorithms.dqn_mamba import make_agent
        cfg = Config(torso="mamba", num_seeds=num_seeds)
        env, env_params = make(cfg.env_id)
        agent = make_agent(cfg, env, env_params)
    finally:
        sequence_models.Mamba = original

    def start(key):
        key, state = agent.init(key)
        if script == "dqn_mamba":
            key, state = agent.warmup(key, state, cfg.learning_starts)
        return key, state

    keys, state = jax.jit(jax.vmap(start))(seed_keys(0, num_seeds))

    def train(key, state):
        _, state, _ = agent.train(key, state, steps)
        return state

    start_time = time.perf_counter()
    call = jax.jit(jax.vmap(train)).lower(keys, state).compile()
    compile_seconds = time.perf_counter() - start_time
    jax.block_until_ready(call(keys, state))  # the first run pays one-off costs
    return call, (keys, state), compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scripts", nargs="+", default=["ppo_rnn", "dqn_mamba"])
    parser.add_argument("--num-seeds", type=int, default=4)
    parser.add_argument("--ppo-steps", type=int, default=8_000, help="env steps per seed")
    parser.add_argument("--dqn-steps", type=int, default=8_000, help="env steps per seed")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    platform = jax.devices()[0].platform
    rows = []
    for script in args.scripts:
        steps = args.ppo_steps if script == "ppo_rnn" else args.dqn_steps
        calls = {scan: compiled_training(script, scan, args.num_seeds, steps) for scan in SCANS}
        seconds: dict[str, list[float]] = {scan: [] for scan in SCANS}
        for _ in range(args.repeats):
            for scan, (call, inputs, _) in calls.items():
                start = time.perf_counter()
                jax.block_until_ready(call(*inputs))
                seconds[scan].append(time.perf_counter() - start)
        row = {"script": script, "env_steps": args.num_seeds * steps, "scans": {}}
        for scan in SCANS:
            median = statistics.median(seconds[scan])
            row["scans"][scan] = {
                "compile_seconds": calls[scan][2],
                "run_seconds": seconds[scan],
                "env_steps_per_second": row["env_steps"] / median,
            }
        rate = {scan: row["scans"][scan]["env_steps_per_second"] for scan in SCANS}
        row["speedup"] = rate["chunked"] / rate["associative"]
        rows.append(row)
        print(
            f"{script}: associative {rate['associative']:,.0f}, chunked {rate['chunked']:,.0f} "
            f"env steps/s ({row['speedup']:.2f}x)",
            flush=True,
        )
    results = {"machine": machine_info(), "args": vars(args), "rows": rows}
    write_json(RESULTS / f"mamba_scan_{platform}.json", results)
    machine = results["machine"]
    lines = [
        f"# --torso mamba: associative against chunked selective scan ({platform})",
        "",
        f"`python benchmarks/mamba_scan.py --repeats {args.repeats}`: default flags of each "
        f"script, {args.num_seeds} seeds in one compiled call, training only (after init and "
        f"warm-up), medians of {args.repeats} ABAB repeats; env steps/s counts every seed.",
        "",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, jax {machine['jax']}, "
        f"{machine['date']}.",
        "",
        "| script | env steps | associative (env steps/s) | chunked (env steps/s) | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        scans = row["scans"]
        lines.append(
            f"| {row['script']} | {row['env_steps']:,} | "
            f"{scans['associative']['env_steps_per_second']:,.0f} | "
            f"{scans['chunked']['env_steps_per_second']:,.0f} | {row['speedup']:.2f}x |"
        )
    atomic_write(RESULTS / f"mamba_scan_{platform}.md", ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
