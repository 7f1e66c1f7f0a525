"""Forward + backward time and peak memory of each torso against sequence length.

    python -m benchmarks.sequence_models            # from the repository root

Every ``--torso`` (as ``make_torso`` builds it at one layer): GRU (``FusedGRUCell``) and LSTM
and the other sequential scans against LRU, S5 and FFM (their default scan: sequential on a CPU,
associative elsewhere; ``<name>_associative`` is the associative scan everywhere), Mamba (its
chunked selective scan, and the associative form), Mamba-2 (chunked matmuls), windowed
self-attention and the rest of the zoo, at batch 32, width 128, T = 64 ... 2048, with
random episode resets. Time is the median of repeated runs of the compiled loss-and-gradient
call; memory is what XLA's memory analysis of that compiled call reports: temp + argument +
output bytes (on CPU there is no allocator peak to read). Results go to
benchmarks/results/sequence_models_<platform>.json and .png; the lengths where a parallel model
first beats the faster RNN are printed and stored.
"""

import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import tyro

from benchmarks.machine import machine_info
from benchmarks.zoo import KIND
from memorax.networks.torsos import TORSO_NAMES, make_torso
from memorax.results import atomic_write, write_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

RESULTS = Path(__file__).resolve().parent / "results"
SEQUENTIAL = ("gru", "lstm")  # the RNNs the parallel models are measured against
# The torsos that are not parallel in time (the stepped cells, the memoryless mlp): no crossover.
STEPPED = {name for name, (kind, *_) in KIND.items() if kind != "parallel"}
ASSOCIATIVE_FORMS = ("lru", "s5", "ffm", "mamba")  # timed again with scan="associative"
SEQUENTIAL_FORMS = ("lru", "s5", "ffm")  # <name>_sequential: the loop, on any platform
MEMORY_MEASURE = "temp + argument + output bytes of the compiled forward+backward (XLA)"


@dataclass(frozen=True)
class Config:
    lengths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    """Sequence lengths T to time."""
    batch_size: int = 32
    """Rows per call."""
    hidden_dim: int = 128
    """Input width and width of every torso."""
    repeats: int = 5
    """Timed runs per point (after one compiling run); halved from T = 1024 on."""
    models: tuple[str, ...] = ()
    """Which torsos to time (default: every --torso name, and the associative forms)."""
    reset_probability: float = 0.01
    """Chance that a step starts a new episode."""


def make_models(hidden_dim: int) -> dict[str, Callable[[], nn.Module]]:
    """Every --torso name as ``make_torso`` builds it at one layer (attention and gtrxl with
    their feed-forward blocks), and the associative form of each torso whose scan is chosen by
    platform (LRU, S5, FFM: ``scan="auto"``, sequential on a CPU) and of Mamba's selective scan."""
    built = {name: partial(make_torso, name, hidden_dim) for name in TORSO_NAMES}
    for name in ASSOCIATIVE_FORMS:
        built[f"{name}_associative"] = partial(
            lambda name: make_torso(name, hidden_dim).clone(scan="associative"), name
        )
    for name in SEQUENTIAL_FORMS:  # on request: on a CPU they are the default forms
        built[f"{name}_sequential"] = partial(
            lambda name: make_torso(name, hidden_dim).clone(scan="sequential"), name
        )
    return built


def measure(model: nn.Module, cfg: Config, length: int) -> dict:
    """Median seconds and compiled memory of one loss-and-gradient call at this length."""
    x_key, reset_key, init_key = jax.random.split(jax.random.key(length), 3)
    x = jax.random.normal(x_key, (cfg.batch_size, length, cfg.hidden_dim))
    reset = jax.random.bernoulli(reset_key, cfg.reset_probability, (cfg.batch_size, length))
    carry = model.initialize_carry(cfg.batch_size)
    params = jax.jit(model.init)(init_key, x[:, :2], reset[:, :2], carry)

    def loss(params, x, reset, carry):
        return jnp.mean(model.apply(params, x, reset, carry)[1] ** 2)

    compiled = jax.jit(jax.value_and_grad(loss)).lower(params, x, reset, carry).compile()
    memory = compiled.memory_analysis()
    jax.block_until_ready(compiled(params, x, reset, carry))
    repeats = cfg.repeats if length < 1024 else max(1, cfg.repeats // 2)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, x, reset, carry))
        times.append(time.perf_counter() - start)
    parts = {
        "temp_bytes": memory.temp_size_in_bytes,
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
    }
    return {
        "length": length,
        "seconds": statistics.median(times),
        "runs": times,
        "memory_bytes": sum(parts.values()),
    } | parts


def crossovers(results: dict[str, list[dict]]) -> dict[str, int | None]:
    """For each parallel model, the first length from which it is faster than the faster RNN
    at every longer length too (None if it never is in the measured range)."""
    sequential = [name for name in SEQUENTIAL if name in results]
    found = {}
    for name, points in results.items():
        if name in STEPPED or not sequential:
            continue
        found[name] = None
        for i in reversed(range(len(points))):
            fastest_rnn = min(results[rnn][i]["seconds"] for rnn in sequential)
            if points[i]["seconds"] >= fastest_rnn:
                break
            found[name] = points[i]["length"]
    return found


def plot(results: dict[str, list[dict]], title: str) -> bytes:
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(13, 5.5))
    colours = plt.get_cmap("tab20").colors
    for i, (name, points) in enumerate(results.items()):
        lengths = [point["length"] for point in points]
        # Stepped models dashed; colour and marker together tell the two dozen lines apart.
        style = dict(
            linestyle="--" if name in STEPPED else "-",
            marker="os^vD"[i // len(colours) + 2 * (i % 2)],
            color=colours[i % len(colours)],
            markersize=4,
        )
        time_axis.plot(lengths, [1e3 * p["seconds"] for p in points], label=name, **style)
        memory_axis.plot(lengths, [p["memory_bytes"] / 2**20 for p in points], **style)
    for axis, label in [(time_axis, "forward+backward (ms)"), (memory_axis, "memory (MiB)")]:
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length T")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    figure.legend(loc="center right", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0, 0.84, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()


def main(cfg: Config) -> None:
    platform = jax.devices()[0].platform
    factories = make_models(cfg.hidden_dim)
    if not cfg.models:
        default = [name for name in factories if not name.endswith("_sequential")]
        cfg = replace(cfg, models=tuple(default))
    unknown = sorted(set(cfg.models) - set(factories))
    if unknown:
        raise SystemExit(f"error: --models {unknown} unknown; choose from {', '.join(factories)}")
    results: dict[str, list[dict]] = {}
    for name in cfg.models:
        results[name] = []
        for length in cfg.lengths:
            point = measure(factories[name](), cfg, length)
            results[name].append(point)
            print(
                f"{name:>9} T={length:>5}: {1e3 * point['seconds']:9.1f} ms  "
                f"{point['memory_bytes'] / 2**20:8.1f} MiB",
                flush=True,
            )
    overtakes = crossovers(results)
    for name, length in overtakes.items():
        where = f"from T = {length} on" if length else "nowhere in the measured range"
        print(f"{name} is faster than the faster of {', '.join(SEQUENTIAL)} {where}")

    machine = machine_info() | {"device": str(jax.devices()[0]), "platform_name": platform}
    write_json(
        RESULTS / f"sequence_models_{platform}.json",
        {
            "machine": machine,
            "config": vars(cfg) | {"lengths": list(cfg.lengths), "models": list(cfg.models)},
            "memory_measure": MEMORY_MEASURE,
            "time_measure": "median seconds of the compiled loss-and-gradient call",
            "parallel_faster_than_rnn_from_length": overtakes,
            "results": results,
        },
    )
    title = (
        f"batch {cfg.batch_size}, width {cfg.hidden_dim}, {machine['cpu']} x"
        f"{machine['cpu_count']} ({platform}), jax {jax.__version__}"
    )
    atomic_write(RESULTS / f"sequence_models_{platform}.png", plot(results, title))


if __name__ == "__main__":
    main(tyro.cli(Config))
