"""A script's training speed before and after a change, side by side on one machine.

    python benchmarks/before_after.py sac_s5 --before 41313ac --repeats 3
    python benchmarks/before_after.py ppo_rnn --before 41313ac --flags torso=s5

Two worker processes, one importing the script from a checkout of ``--before`` (a git worktree
in a temporary folder) and one from this tree, each build the script's agent from its Config
(default flags apart from ``--flags`` and ``--num-seeds``), initialise every seed (and fill the
buffer with --learning-starts random steps where the script has a warm-up), and compile one
``jax.jit(jax.vmap(...))`` call of the script's own ``train`` for ``--steps`` env steps per seed.
The parent then asks them in turn (before, after, after, before, ...: each version runs first
in half the calls, a second apart) to run that call ``--repeats`` times after a first one. Only
one worker computes at a time, so the two share the machine as one process would. The same code
ran up to 1.4x faster in one process than in another here, so this is done for ``--processes``
pairs of fresh workers: a version's speed is the median over processes of each process's median
(env steps/s over every seed), and the ratio after / before is given per pair and as their
median. ``--before HEAD`` on a clean tree is an A/A check: both sides run the same code.
Results go to benchmarks/results/before_after_<script>_<platform>.json and .md (``--name`` adds
a suffix).
"""

import argparse
import ast
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONFIGS = {"ppo_rnn": "PPOConfig", "dqn_mamba": "DQNConfig", "sac_s5": "SACConfig"}


def worker(root: str, script: str, flags: dict, num_seeds: int, steps: int) -> None:
    """Compile the script's training call from the checkout at ``root``, then time one call per
    line read from stdin, writing the seconds to stdout."""
    sys.path.insert(0, root)
    import importlib

    import jax

    import memorax

    module = importlib.import_module(f"algorithms.{script}")
    for imported in (module, memorax):  # the script and the library of this checkout, not another
        assert Path(imported.__file__).resolve().is_relative_to(Path(root).resolve()), imported
    from memorax.environments import make
    from memorax.experiment import seed_keys

    cfg = getattr(module, CONFIGS[script])(num_seeds=num_seeds, **flags)
    env, env_params = make(cfg.env_id)
    agent = module.make_agent(cfg, env, env_params)
    steps = max(steps // cfg.steps_per_round, 1) * cfg.steps_per_round

    def start(key):
        key, state = agent.init(key)
        if hasattr(agent, "warmup"):
            key, state = agent.warmup(key, state, cfg.learning_starts)
        return key, state

    keys, state = jax.jit(jax.vmap(start))(seed_keys(0, num_seeds))

    def train(key, state):
        return agent.train(key, state, steps)[1]

    begin = time.perf_counter()
    call = jax.jit(jax.vmap(train)).lower(keys, state).compile()
    compile_seconds = time.perf_counter() - begin
    jax.block_until_ready(call(keys, state))  # the first run pays one-off costs
    print(json.dumps({"compile_seconds": compile_seconds, "env_steps": steps * num_seeds}))
    sys.stdout.flush()
    for _ in sys.stdin:
        begin = time.perf_counter()
        jax.block_until_ready(call(keys, state))
        print(time.perf_counter() - begin, flush=True)


def run_pair(args, revision: str, roots: dict, pair: int):
    """Start one worker per checkout (in turn, the first one alternating from pair to pair),
    time ``args.repeats`` calls of each in ABBA order -> (seconds per label, worker info)."""
    workers, info = {}, {}
    for label, root in list(roots.items())[:: 1 if pair % 2 == 0 else -1]:
        command = [sys.executable, __file__, args.script, "--before", revision,
                   "--num-seeds", str(args.num_seeds), "--steps", str(args.steps),
                   "--worker", str(root), "--flags", *args.flags]  # fmt: skip
        workers[label] = subprocess.Popen(
            command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        info[label] = json.loads(workers[label].stdout.readline())  # compiled: wait
        print(f"pair {pair + 1}, {label}: compiled in {info[label]['compile_seconds']:.1f} s")
    seconds: dict[str, list[float]] = {label: [] for label in roots}
    for repeat in range(args.repeats):
        # before, after, after, before, ...: in strict alternation the code that ran second in
        # every pair was 0.78x the same code run first (sac_s5 --torso mlp, unchanged between
        # the two revisions); a pause lets the other process settle
        for label in list(roots)[:: 1 if repeat % 2 == 0 else -1]:
            time.sleep(1.0)
            workers[label].stdin.write("run\n")
            workers[label].stdin.flush()
            seconds[label].append(float(workers[label].stdout.readline()))
        times = ", ".join(f"{label} {s[-1]:.2f} s" for label, s in seconds.items())
        print(f"pair {pair + 1}, repeat {repeat + 1}: {times}", flush=True)
    for process in workers.values():
        process.stdin.close()
        process.wait()
    return seconds, info


def parse_flags(pairs: list[str]) -> dict:
    flags = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            flags[name.replace("-", "_")] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            flags[name.replace("-", "_")] = value
    return flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script", choices=list(CONFIGS))
    parser.add_argument("--before", required=True, help="git revision to compare this tree with")
    parser.add_argument("--flags", nargs="*", default=[], help="config fields, e.g. torso=s5")
    parser.add_argument("--num-seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2_000, help="env steps per seed per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per process")
    parser.add_argument(
        "--processes", type=int, default=3,
        help="pairs of fresh worker processes: the same code ran up to 1.4x faster in one "
        "process than in another (A/A), so one pair is not a measurement",
    )  # fmt: skip
    parser.add_argument("--name", default="", help="suffix of the results files")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    flags = parse_flags(args.flags)
    if args.worker:
        worker(args.worker, args.script, flags, args.num_seeds, args.steps)
        return

    import jax

    from benchmarks.machine import machine_info
    from memorax.results import atomic_write, write_json

    revision = subprocess.run(
        ["git", "rev-parse", "--short", args.before], cwd=REPO, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        before_root = Path(scratch) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(before_root), revision], cwd=REPO,
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            roots = {"before": before_root, "after": REPO}
            pairs = [run_pair(args, revision, roots, pair) for pair in range(args.processes)]
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(before_root)], cwd=REPO, check=False
            )
    env_steps = pairs[0][1]["after"]["env_steps"]
    # each process's median, then the median over processes: a process is the unit that varies
    medians = {
        label: [statistics.median(p[0][label]) for p in pairs] for label in ("before", "after")
    }
    rates = {label: env_steps / statistics.median(m) for label, m in medians.items()}
    ratios = [b / a for b, a in zip(medians["before"], medians["after"], strict=True)]
    machine = machine_info()
    platform = jax.devices()[0].platform
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)benchmarks/results",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip  (results being written elsewhere are not code)
    after_label = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip() + (" + uncommitted changes" if dirty else "")
    flag_text = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items()) or "default"
    result = {
        "script": args.script, "flags": flags, "num_seeds": args.num_seeds,
        "env_steps_per_call": env_steps, "before": revision, "after": after_label,
        "seconds_per_process": [p[0] for p in pairs],
        "compile_seconds_per_process": [
            {label: i["compile_seconds"] for label, i in p[1].items()} for p in pairs
        ],
        "env_steps_per_second": rates, "speedup_per_process": ratios,
        "speedup": statistics.median(ratios), "machine": machine,
    }  # fmt: skip
    stem = f"before_after_{args.script}{'_' + args.name if args.name else ''}_{platform}"
    write_json(RESULTS / f"{stem}.json", result)
    lines = [
        f"# {args.script} ({flag_text} flags): before and after, side by side ({platform})",
        "",
        f"`python benchmarks/before_after.py {' '.join(sys.argv[1:])}`: {args.num_seeds} seeds "
        f"vmapped in one compiled call of the script's `train`, {env_steps:,} env steps per call "
        f"(all seeds), after warm-up; {args.processes} pairs of fresh processes, in each "
        f"{args.repeats} timed calls per version after a first run, alternating ABBA.",
        "",
        "| process pair | before: median s | after: median s | after / before |",
        "|---|---:|---:|---:|",
    ]
    for pair, ratio in enumerate(ratios):
        lines.append(
            f"| {pair + 1} | {medians['before'][pair]:.3f} | {medians['after'][pair]:.3f} | "
            f"{ratio:.2f}x |"
        )
    lines += [
        "",
        f"Before ({revision}): {rates['before']:,.0f} env steps/s, after ({after_label}): "
        f"{rates['after']:,.0f} (medians over processes). After / before: median "
        f"{result['speedup']:.2f}x, {min(ratios):.2f}-{max(ratios):.2f}x over the pairs. "
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, jax {machine['jax']}, "
        f"{machine['date']}.",
    ]
    atomic_write(RESULTS / f"{stem}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines[-1:]), flush=True)


if __name__ == "__main__":
    main()
