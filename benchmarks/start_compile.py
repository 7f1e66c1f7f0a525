"""What compiling a run's start (init, warmup) costs, with XLA's default options and with the
options ``memorax.experiment`` compiles it with (``_start_options``: LLVM optimisation level 1
on a CPU), for each script's default config:

- ``start``: ``jit(vmap(start))`` of the script's seeds, lowered once, compiled each way; its
  compile and run seconds, and whether the two give the same carry, bit for bit;
- ``load init``: the init of every seed that ``--load`` needs (only its shapes survive: the
  saved parameters replace its own), op by op as the scripts ran it before, and with
  ``memorax.experiment.run_once``.

    python benchmarks/start_compile.py --repeats 3

Each measurement is a fresh process (a compile in a process that has compiled before reuses
some of its work), the variants alternating; medians of ``--repeats``. Results go to
benchmarks/results/start_compile_<platform>.json and .md.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SCRIPTS = {"ppo_rnn": "PPOConfig", "dqn_mamba": "DQNConfig", "sac_s5": "SACConfig"}
VARIANTS = {"start": ("default", "start options"), "load init": ("op by op", "run_once")}


def _digest(tree) -> str:
    """sha256 of every leaf's bytes (keys as their data): equal digests, equal carries."""
    hashed = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        hashed.update(np.asarray(leaf).tobytes())
    return hashed.hexdigest()


def child(script: str, part: str, variant: str) -> dict:
    """One measurement in this fresh process."""
    import importlib

    from memorax.environments import make
    from memorax.experiment import _start_options, run_once, seed_keys

    module = importlib.import_module(f"algorithms.{script}")
    cfg = getattr(module, SCRIPTS[script])()
    env, env_params = make(cfg.env_id)
    agent = module.make_agent(cfg, env, env_params)
    keys = seed_keys(cfg.seed, cfg.num_seeds)
    if part == "load init":
        init = jax.vmap(agent.init)
        began = time.perf_counter()
        out = jax.block_until_ready(init(keys) if variant == "op by op" else run_once(init, keys))
        return {"seconds": time.perf_counter() - began, "digest": _digest(out[1].params)}
    lowered = jax.jit(jax.vmap(partial(module.start, agent))).lower(keys)
    began = time.perf_counter()
    compiled = lowered.compile(_start_options() if variant == "start options" else {})
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    return {
        "compile_seconds": compile_seconds,
        "run_seconds": time.perf_counter() - began,
        "digest": _digest(out),
    }


def measure(script: str, part: str, repeats: int) -> dict:
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS[part]}
    for repeat in range(repeats):
        order = VARIANTS[part] if repeat % 2 == 0 else VARIANTS[part][::-1]
        for variant in order:
            command = [sys.executable, __file__, "--child", script, part, variant]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
            runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(script, part, variant, runs[variant][-1], flush=True)
    row = {"script": script, "part": part, "repeats": repeats}
    for variant, results in runs.items():
        for key in results[0]:
            if key != "digest":
                row[f"{variant}: {key}"] = statistics.median(r[key] for r in results)
    digests = {r["digest"] for results in runs.values() for r in results}
    row["bit_identical"] = len(digests) == 1
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", nargs="+", default=list(SCRIPTS), choices=list(SCRIPTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("SCRIPT", "PART", "VARIANT"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from benchmarks.machine import machine_info
    from memorax.results import atomic_write, write_json

    rows = [measure(s, part, args.repeats) for part in VARIANTS for s in args.scripts]
    platform = jax.devices()[0].platform
    machine = machine_info()
    write_json(RESULTS / f"start_compile_{platform}.json", {"machine": machine, "rows": rows})
    lines = [
        f"# Compiling a run's start, default XLA options against memorax's ({platform})",
        "",
        f"Each script's default config; medians of {args.repeats} fresh processes per variant.",
        f"Machine: {machine}",
        "",
        "| script | start compile s: default | start options | ratio | start run s: default "
        "| start options | same carry bit for bit |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["part"] == "start":
            default, ours = row["default: compile_seconds"], row["start options: compile_seconds"]
            lines.append(
                f"| {row['script']} | {default:.1f} | {ours:.1f} | {default / ours:.1f}x | "
                f"{row['default: run_seconds']:.2f} | {row['start options: run_seconds']:.2f} | "
                f"{'yes' if row['bit_identical'] else 'NO'} |"
            )
    lines += [
        "",
        "| script | --load init s: op by op | run_once | ratio | same parameters bit for bit |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if row["part"] == "load init":
            before, after = row["op by op: seconds"], row["run_once: seconds"]
            lines.append(
                f"| {row['script']} | {before:.1f} | {after:.1f} | {before / after:.1f}x | "
                f"{'yes' if row['bit_identical'] else 'NO'} |"
            )
    lines += [
        "",
        "`--load` replaces the initial parameters with the saved ones, so only their shapes matter "
        "there; a NO is op-by-op against fused rounding (measured on 2026-12-03: dqn_mamba's "
        "Mamba `A_log`, log(1..16), one float32 ulp apart).",
    ]
    atomic_write(RESULTS / f"start_compile_{platform}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
