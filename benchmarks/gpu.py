"""The headline figures of a GPU in one go (issue 15): ppo_rnn's throughput against seeds for three
torsos, sequence models' forward+backward time against length, and dqn_mamba's and sac_s5's
throughput.

    bash benchmarks/gpu.sh                                   # on one GPU (benchmarks/GPU.md)
    python benchmarks/gpu.py --tiny --output-dir /tmp/gpu    # every part at toy sizes, any CPU

1. ``ppo``: algorithms/ppo_rnn.py at its default flags apart from the budget (--ppo-rounds rounds
   of 16 envs x 125 steps per seed), env steps per second of all seeds together, for each torso
   and seed count.
2. ``sequence``: benchmarks/sequence_models.py's forward+backward call of each model against T;
   where each parallel model overtakes the GRU, and the GRU's time over each model's at T = 1024.
3. ``off-policy``: algorithms/dqn_mamba.py and sac_s5.py at their default flags apart from the
   budget (--dqn-rounds and --sac-rounds rounds of training after the least warmup that their
   checks allow), env steps per second of all seeds together, warmup included as the scripts
   count it.

A training point is built as the scripts build it (make_agent, then start and train of each seed)
and compiled once as ``run_seeds`` compiles it on one device: the run itself for one seed,
``jax.vmap`` over the seed keys for more. Compile time is that one compilation; run time is the
median of --repeats runs of the compiled call. Results go to <output-dir>/gpu_<device>.json and
.md, rewritten after every point: a run stopped part-way keeps what it measured. A point that fails
in XLA (out of memory, say) is recorded with its error and the run goes on, then exits 1.
"""

import argparse
import dataclasses
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from algorithms import dqn_mamba, ppo_rnn, sac_s5
from benchmarks import sequence_models
from benchmarks.machine import machine_info
from memorax.environments import make
from memorax.experiment import seed_keys
from memorax.flags import RunFlags
from memorax.networks.torsos import TORSO_NAMES
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("ppo", "sequence", "off-policy")
RATIO_LENGTH = 1024
# --tiny: every part at sizes a CPU runs in seconds (a check that the script works, no figures).
TINY = dict(
    ppo_torsos=["mlp"], ppo_seeds=[1, 2], ppo_rounds=1, sequence_models=["gru", "s5"],
    sequence_lengths=[8, 16], sequence_batch_size=2, sequence_repeats=1, off_policy_seeds=[1],
    dqn_rounds=1, sac_rounds=1, dqn_torso="mlp", sac_torso="mlp", repeats=1,
)  # fmt: skip


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run, in order")
    add("--ppo-torsos", nargs="+", choices=TORSO_NAMES, default=["gru", "s5", "mlp"], help="torsos")
    add("--ppo-seeds", nargs="+", type=int, default=[1, 16, 256, 1024], help="seed counts")
    ppo, dqn, sac = ppo_rnn.PPOConfig(), dqn_mamba.DQNConfig(), sac_s5.SACConfig()
    ppo_round = f"{ppo.num_envs} envs x {ppo.num_steps} steps"
    add("--ppo-rounds", type=int, default=16, help=f"rounds per seed of {ppo_round}")
    models = list(sequence_models.make_models(8))
    # the GRU, the state-space models in each of their forms (the loop a CPU gets and the
    # associative scan an accelerator gets by default) and Mamba-2: 9 models, so that this part
    # leaves the others their time; any model of benchmarks/sequence_models.py can be asked for
    compared = ["gru", "mingru", "lru_sequential", "lru_associative", "s5_sequential"]
    compared += ["s5_associative", "mamba", "mamba_associative", "mamba2"]
    add("--sequence-models", nargs="+", choices=models, default=compared, help="models")
    lengths = [64, 128, 256, 512, 1024, 2048, 4096]
    add("--sequence-lengths", nargs="+", type=int, default=lengths, help="lengths T")
    add("--sequence-batch-size", type=int, default=32, help="sequences per call")
    add("--sequence-repeats", type=int, default=10, help="timed calls, halved from T = 1024")
    add("--off-policy-seeds", nargs="+", type=int, default=[1, 64], help="seed counts")
    dqn_round = f"{dqn.steps_per_round} env steps, {dqn.gradient_steps} update"
    add("--dqn-rounds", type=int, default=500, help=f"rounds per seed of {dqn_round}")
    sac_round = f"{sac.steps_per_round} env steps, {sac.updates_per_round} updates"
    add("--sac-rounds", type=int, default=500, help=f"rounds per seed of {sac_round}")
    add("--dqn-torso", choices=TORSO_NAMES, default="mamba", help="dqn_mamba's --torso")
    add("--sac-torso", choices=TORSO_NAMES, default="s5", help="sac_s5's --torso")
    add("--repeats", type=int, default=3, help="timed runs of each compiled training point")
    add("--time-limit", type=float, default=480.0,
        help="seconds from the start after which no point starts (0: none)")  # fmt: skip
    add("--tiny", action="store_true", help="toy sizes for every part; size flags still apply")
    add("--output-dir", type=Path, default=RESULTS, help="where gpu_<device>.json and .md go")
    args = parser.parse_args(argv)
    if args.tiny:  # the preset replaces the defaults; flags given beside it still apply
        parser.set_defaults(**TINY)
        args = parser.parse_args(argv)
    counts = ["ppo_seeds", "ppo_rounds", "sequence_lengths", "sequence_batch_size"]
    counts += ["sequence_repeats", "off_policy_seeds", "dqn_rounds", "sac_rounds", "repeats"]
    for name in counts:
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{name.replace('_', '-')} ({values}) must be at least 1")
    if args.time_limit < 0:
        parser.error(f"--time-limit ({args.time_limit}) must be 0 (none) or positive")
    if args.output_dir.exists() and not args.output_dir.is_dir():
        parser.error(f"--output-dir {args.output_dir} is a file, not a folder")
    return args


# --- training points ----------------------------------------------------------------------------
def training_run(script, cfg) -> Callable[[jax.Array], jax.Array]:
    """One seed's run as the script builds it: make_agent, then start (init and any warmup) and
    train for the config's training steps. Returns whether every round stayed finite."""
    env, env_params = make(cfg.env_id)
    agent = script.make_agent(cfg, env, env_params)

    def run(key: jax.Array) -> jax.Array:
        key, state = script.start(agent, key)
        _, _, transitions = agent.train(key, state, cfg.training_steps)
        return transitions.metrics["finite"].all()

    return run


def flags(cfg) -> dict:
    """The config's algorithm flags: what the run learns with (no run flags, no seed count)."""
    run_flags = {field.name for field in dataclasses.fields(RunFlags)} | {"num_seeds", "seed"}
    return {name: value for name, value in vars(cfg).items() if name not in run_flags}


def least_warmup(config_class, **fields) -> int:
    """The least --learning-starts the script's checks allow: one replayed sequence per env, in
    whole rounds."""
    cfg = config_class(**fields)
    need = cfg.replay_length * cfg.num_envs
    return math.ceil(need / cfg.steps_per_round) * cfg.steps_per_round


def ppo_config(torso: str, rounds: int) -> ppo_rnn.PPOConfig:
    steps = rounds * ppo_rnn.PPOConfig().steps_per_round
    return ppo_rnn.PPOConfig(torso=torso, total_timesteps=steps, eval_every=steps)


def off_policy_config(config_class, torso: str, rounds: int):
    warmup = least_warmup(config_class, torso=torso)
    training = rounds * config_class(torso=torso).steps_per_round
    return config_class(
        torso=torso, total_timesteps=warmup + training, learning_starts=warmup, eval_every=training
    )


def time_training(run: Callable, num_seeds: int, env_steps: int, repeats: int) -> dict:
    """Compile ``run`` over ``num_seeds`` seed keys as run_seeds does on one device (no vmap for
    a single seed), then time ``repeats`` runs of the compiled call."""
    keys = seed_keys(0, num_seeds)
    over_seeds = jax.vmap(run) if num_seeds > 1 else lambda keys: run(keys[0])[None]
    start = time.perf_counter()
    compiled = jax.jit(over_seeds).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    run_seconds, finite = [], True
    for _ in range(repeats):
        start = time.perf_counter()
        finite &= bool(np.all(jax.block_until_ready(compiled(keys))))
        run_seconds.append(time.perf_counter() - start)
    median = statistics.median(run_seconds)
    return {
        "num_seeds": num_seeds,
        "env_steps": num_seeds * env_steps,
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "median_run_seconds": median,
        "env_steps_per_second": num_seeds * env_steps / median,
        "finite": finite,
    }


# --- the run ------------------------------------------------------------------------------------
class Recorder:
    """The record of the run, rewritten as JSON and Markdown after every point; a deadline after
    which no new point starts."""

    def __init__(self, args: argparse.Namespace, argv: list[str]):
        device = jax.devices()[0]
        slug = re.sub(r"[^a-z0-9]+", "_", device.device_kind.lower()).strip("_")
        self.paths = [args.output_dir / f"gpu_{slug}.{suffix}" for suffix in ("json", "md")]
        self.deadline = time.perf_counter() + args.time_limit if args.time_limit else math.inf
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        self.record: dict[str, Any] = {
            "device": device.device_kind,
            "platform": device.platform,
            "jax": jax.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(["python benchmarks/gpu.py", *argv]),
            "settings": settings,
            "machine": machine_info(),
            "parts": {},
            "skipped": [],
            "errors": [],
        }

    def point(self, what: str, measure: Callable[[], dict]) -> dict | None:
        """``measure()``'s row, or None where the deadline has passed or XLA failed (recorded)."""
        if time.perf_counter() > self.deadline:
            self.record["skipped"].append(what)
            print(f"{what}: skipped (--time-limit reached)", flush=True)
            self.write()
            return None
        print(f"{what}: compiling and timing...", flush=True)
        try:
            return measure()
        except jax.errors.JaxRuntimeError as error:
            message = str(error).splitlines()[0][:300]
            self.record["errors"].append({"point": what, "error": message})
            print(f"{what}: failed: {message}", flush=True)
            self.write()
            return None

    def write(self) -> None:
        json_path, md_path = self.paths
        write_json(json_path, self.record)
        atomic_write(md_path, markdown(self.record).encode())


def ppo_part(args: argparse.Namespace, recorder: Recorder) -> None:
    part = recorder.record["parts"]["ppo"] = {
        "config": {**flags(ppo_config("gru", args.ppo_rounds)), "torso": args.ppo_torsos},
        "rows": [],
    }
    for torso in args.ppo_torsos:
        cfg = ppo_config(torso, args.ppo_rounds)
        run = training_run(ppo_rnn, cfg)
        for num_seeds in args.ppo_seeds:
            row = recorder.point(
                f"ppo_rnn {torso} x {num_seeds} seeds",
                partial(time_training, run, num_seeds, cfg.total_timesteps, args.repeats),
            )
            if row is not None:
                part["rows"].append({"torso": torso, **row})
                print(f"ppo_rnn {torso:>5} x {num_seeds:>5} seeds: {summary(row)}", flush=True)
                recorder.write()


def sequence_part(args: argparse.Namespace, recorder: Recorder) -> None:
    cfg = sequence_models.Config(
        lengths=tuple(args.sequence_lengths), batch_size=args.sequence_batch_size,
        repeats=args.sequence_repeats, models=tuple(args.sequence_models),
    )  # fmt: skip
    factories = sequence_models.make_models(cfg.hidden_dim)
    results: dict[str, list[dict]] = {}
    part = recorder.record["parts"]["sequence"] = {
        "config": vars(cfg) | {"lengths": list(cfg.lengths), "models": list(cfg.models)},
        "time_measure": "median seconds of the compiled loss-and-gradient call",
        "memory_measure": sequence_models.MEMORY_MEASURE,
        "results": results,
    }
    for name in cfg.models:
        results[name] = []
        for length in cfg.lengths:
            point = recorder.point(
                f"{name} T={length}",
                partial(sequence_models.measure, factories[name](), cfg, length),
            )
            if point is None:
                continue
            results[name].append(point)
            print(f"{name:>9} T={length:>5}: {1e3 * point['seconds']:9.2f} ms", flush=True)
            recorder.write()
        part.update(against_gru(results))
        recorder.write()


def against_gru(results: dict[str, list[dict]]) -> dict:
    """Where each parallel model overtakes the GRU (sequence_models.crossovers over the lengths
    measured for every model), and the GRU's time over each model's at T = 1024 (or the longest
    length below it that was measured)."""
    if not results.get("gru"):
        return {}
    compared = {name: points for name, points in results.items() if points and name != "lstm"}
    everywhere = set.intersection(*({p["length"] for p in points} for points in compared.values()))
    aligned = {
        name: [p for p in points if p["length"] in everywhere] for name, points in compared.items()
    }
    gru = {point["length"]: point["seconds"] for point in results["gru"]}
    length = max([n for n in gru if n <= RATIO_LENGTH] or gru)
    ratios = {
        name: gru[length] / point["seconds"]
        for name, points in compared.items()
        for point in points
        if name != "gru" and point["length"] == length
    }
    return {
        "overtakes_gru_from_length": sequence_models.crossovers(aligned),
        "ratio_length": length,
        "gru_time_over_model_time": ratios,
    }


def off_policy_part(args: argparse.Namespace, recorder: Recorder) -> None:
    dqn = off_policy_config(dqn_mamba.DQNConfig, args.dqn_torso, args.dqn_rounds)
    sac = off_policy_config(sac_s5.SACConfig, args.sac_torso, args.sac_rounds)
    scripts = [("dqn_mamba", dqn_mamba, dqn), ("sac_s5", sac_s5, sac)]
    part = recorder.record["parts"]["off-policy"] = {
        "configs": {name: flags(cfg) for name, _, cfg in scripts},
        "rows": [],
    }
    for name, script, cfg in scripts:
        run = training_run(script, cfg)
        for num_seeds in args.off_policy_seeds:
            row = recorder.point(
                f"{name} {cfg.torso} x {num_seeds} seeds",
                partial(time_training, run, num_seeds, cfg.total_timesteps, args.repeats),
            )
            if row is not None:
                part["rows"].append({"script": name, "torso": cfg.torso, **row})
                print(f"{name} {cfg.torso} x {num_seeds:>3} seeds: {summary(row)}", flush=True)
                recorder.write()


def summary(row: dict) -> str:
    return (
        f"compile {row['compile_seconds']:6.1f} s, run {row['median_run_seconds']:7.2f} s, "
        f"{row['env_steps_per_second']:>13,.0f} env steps/s"
    )


# --- Markdown -----------------------------------------------------------------------------------
def markdown(record: dict) -> str:
    parts = record["parts"]
    lines = [
        f"# GPU figures: {record['device']}",
        "",
        f"jax {record['jax']}, {record['date']}, {record['machine']['cpu']} x "
        f"{record['machine']['cpu_count']}; `{record['command']}` (benchmarks/gpu.py says how "
        "each figure is taken). Raw numbers in the JSON beside this file.",
    ]
    if "ppo" in parts:
        cfg = parts["ppo"]["config"]
        lines += [
            "",
            "## ppo_rnn: env steps per second of all seeds together",
            "",
            f"Default flags ({cfg['env_id']}, {cfg['num_envs']} envs x {cfg['num_steps']} steps, "
            f"hidden {cfg['hidden_size']}, {cfg['update_epochs']} epochs x "
            f"{cfg['num_minibatches']} minibatches) apart from the budget: "
            f"{cfg['total_timesteps']:,} env steps per seed, no evaluation. One compilation per "
            "row; run time is the median of the compiled call's runs.",
            "",
            "| torso | seeds | compile (s) | median run (s) | env steps/s | per seed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['torso']} | {row['num_seeds']} | {row['compile_seconds']:.1f} | "
            f"{row['median_run_seconds']:.2f} | {row['env_steps_per_second']:,.0f} | "
            f"{row['env_steps_per_second'] / row['num_seeds']:,.0f} |"
            for row in parts["ppo"]["rows"]
        ]
    if "sequence" in parts:
        lines += sequence_markdown(parts["sequence"])
    if "off-policy" in parts:
        lines += [
            "",
            "## dqn_mamba and sac_s5: env steps per second of all seeds together",
            "",
            "Default flags apart from the budget: "
            + "; ".join(
                f"{name} {cfg['total_timesteps'] - cfg['learning_starts']:,} training env "
                f"steps per seed after {cfg['learning_starts']:,} of warmup"
                for name, cfg in parts["off-policy"]["configs"].items()
            )
            + ". The warmup's steps count, as in the scripts' own figures; no evaluation.",
            "",
            "| script | torso | seeds | compile (s) | median run (s) | env steps/s | per seed |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['script']} | {row['torso']} | {row['num_seeds']} | "
            f"{row['compile_seconds']:.1f} | {row['median_run_seconds']:.2f} | "
            f"{row['env_steps_per_second']:,.0f} | "
            f"{row['env_steps_per_second'] / row['num_seeds']:,.0f} |"
            for row in parts["off-policy"]["rows"]
        ]
    if record["skipped"] or record["errors"]:
        lines += ["", "## Not measured", ""]
        lines += [f"- {what}: skipped, --time-limit reached" for what in record["skipped"]]
        lines += [f"- {error['point']}: failed: {error['error']}" for error in record["errors"]]
    return "\n".join(lines) + "\n"


def sequence_markdown(part: dict) -> list[str]:
    cfg, results = part["config"], part["results"]
    names = [name for name in cfg["models"] if results.get(name)]
    lengths = sorted({point["length"] for points in results.values() for point in points})
    seconds = {(n, p["length"]): p["seconds"] for n, points in results.items() for p in points}
    lines = [
        "",
        "## Sequence models: forward + backward against sequence length T",
        "",
        f"benchmarks/sequence_models.py's call at batch {cfg['batch_size']}, width "
        f"{cfg['hidden_dim']}: median milliseconds of the compiled loss-and-gradient call.",
    ]
    if not names:
        return lines
    lines += ["", "| T | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for length in lengths:
        cells = [f"{1e3 * seconds[n, length]:.2f}" if (n, length) in seconds else "" for n in names]
        lines.append(f"| {length} | " + " | ".join(cells) + " |")
    if "overtakes_gru_from_length" in part:
        lines += [
            "",
            f"Against the GRU (its time over each model's at T = {part['ratio_length']}):",
        ]
        for name, length in part["overtakes_gru_from_length"].items():
            where = f"faster from T = {length} on" if length else "not faster from any T measured"
            ratio = part["gru_time_over_model_time"].get(name)
            lines.append(f"- {name}: {where}; {ratio:.2f}x" if ratio else f"- {name}: {where}")
    return lines


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    recorder = Recorder(args, argv)
    device = recorder.record["device"]
    print(f"GPU figures on {device} (jax {jax.__version__}) -> {recorder.paths[0]}", flush=True)
    runs = {"ppo": ppo_part, "sequence": sequence_part, "off-policy": off_policy_part}
    for part in args.parts:
        runs[part](args, recorder)
        recorder.write()
    print(f"wrote {recorder.paths[0]} and {recorder.paths[1].name}", flush=True)
    if recorder.record["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
