"""Where an RNN's input projection should run: inside the time loop or hoisted before it.

    python benchmarks/rnn_layout.py            # from the repository root

``RNN`` computes a ``FusedGRUCell``'s, ``FusedLSTMCell``'s, ``ElmanCell``'s or ``MGUCell``'s
input projection for the whole sequence before the scan (``hoisted``). This times the
alternatives on the same cells and weights: ``loop`` (the cell's ``__call__`` per step, both
matmuls inside the scan, as flax's ``nn.SimpleCell`` and ``nn.MGUCell`` run, which ``--torso
elman`` and ``mgu`` were before ``ElmanCell`` and ``MGUCell``),
``time-major`` (hoisted, the projection computed on [T, B, F] so each step reads a contiguous
slice) and, for the LSTM, flax's ``nn.OptimizedLSTMCell`` in the loop (what ``--torso lstm`` was
before ``FusedLSTMCell``: its per-gate kernels concatenated at every step). Three shapes, each
the compiled loss-and-gradient call (or, at T = 1, the forward step alone, as acting calls it):
ppo_rnn's minibatch at default flags (4 env sequences of 125 steps), its acting step (16 envs,
one step), and the sequence-model benchmark's batch 32 at T = 1024. Time is the median of
repeated runs after a compiling one, interleaved round by round; width 128, resets with
probability 0.01. Results go to benchmarks/results/rnn_layout_<platform>.json and .md.

``--seeds N`` vmaps each call over N independent sets of weights and inputs, as ppo_rnn vmaps its
seeds (results to rnn_layout_<platform>_seeds<N>.json and .md); ``--shapes`` picks shapes.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.machine import machine_info
from memorax.networks.sequence_models.base import reset_carry
from memorax.networks.sequence_models.gru import FusedGRUCell
from memorax.networks.sequence_models.lstm import FusedLSTMCell
from memorax.networks.sequence_models.rnn import RNN
from memorax.networks.sequence_models.simple_cells import ElmanCell, MGUCell
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH = 128
# (name, batch, length, gradient?): ppo_rnn's training minibatch and acting step, and the
# sequence-model benchmark's shape.
SHAPES = (("ppo minibatch", 4, 125, True), ("acting step", 16, 1, False), ("long", 32, 1024, True))


class _Scanned(nn.Module):
    """A cell over [B, T, F] with resets: every step calls the cell (``hoist=False``), or the
    input projection runs first on the time-major [T, B, F] sequence (``hoist=True``)."""

    cell: nn.RNNCellBase
    hoist: bool

    @nn.compact
    def __call__(self, x, reset, carry):
        initial = self.cell.initialize_carry(jax.random.key(0), (x.shape[0], 1))
        if self.hoist:
            x = self.cell.project(jnp.swapaxes(x, 0, 1))

        def step(cell, carry, inputs):
            x_t, reset_t = inputs
            carry = reset_carry(reset_t, carry, initial)
            return cell.recur(carry, x_t) if self.hoist else cell(carry, x_t)

        scan = nn.scan(
            step, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0
        )
        carry, y = scan(self.cell, carry, (x if self.hoist else jnp.swapaxes(x, 0, 1), reset.T))
        return carry, jnp.swapaxes(y, 0, 1)


def layouts() -> dict[str, Callable[[], nn.Module]]:
    """Every layout by name; the RNN module's own (hoisted, batch-major) is ``hoisted``."""
    built: dict[str, Callable[[], nn.Module]] = {}
    cells = (("gru", FusedGRUCell), ("lstm", FusedLSTMCell), ("elman", ElmanCell), ("mgu", MGUCell))
    for cell_name, cell in cells:
        built[f"{cell_name} hoisted"] = lambda cell=cell: RNN(cell(WIDTH))
        built[f"{cell_name} loop"] = lambda cell=cell: _Scanned(cell(WIDTH), hoist=False)
        built[f"{cell_name} time-major"] = lambda cell=cell: _Scanned(cell(WIDTH), hoist=True)
        if cell_name == "lstm":
            built["lstm flax OptimizedLSTMCell"] = lambda: RNN(nn.OptimizedLSTMCell(WIDTH))
    return built


def compiled_call(model: nn.Module, batch: int, length: int, gradient: bool, seeds: int = 1):
    """The compiled call and its arguments; with ``seeds`` > 1 vmapped over that many sets of
    weights and inputs (a leading axis on every argument)."""
    lead = (seeds,) if seeds > 1 else ()
    x_key, reset_key, init_key = jax.random.split(jax.random.key(length), 3)
    x = jax.random.normal(x_key, lead + (batch, length, WIDTH))
    reset = jax.random.bernoulli(reset_key, 0.01, lead + (batch, length))
    carry = model.cell.initialize_carry(jax.random.key(1), lead + (batch, 1))
    init_keys = jax.random.split(init_key, seeds) if seeds > 1 else init_key
    params = jax.jit(jax.vmap(model.init) if seeds > 1 else model.init)(init_keys, x, reset, carry)

    def loss(params, x, reset, carry):
        return jnp.mean(model.apply(params, x, reset, carry)[1] ** 2)

    def forward(params, x, reset, carry):
        return model.apply(params, x, reset, carry)

    fn = jax.value_and_grad(loss) if gradient else forward
    fn = jax.vmap(fn) if seeds > 1 else fn
    compiled = jax.jit(fn).lower(params, x, reset, carry).compile()
    args = (params, x, reset, carry)
    jax.block_until_ready(compiled(*args))
    return lambda: jax.block_until_ready(compiled(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per shape")
    parser.add_argument("--seeds", type=int, default=1, help="sets of weights vmapped per call")
    parser.add_argument(
        "--shapes", nargs="+", choices=[s[0] for s in SHAPES], default=[s[0] for s in SHAPES]
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, not {args.seeds}")
    shapes = tuple(s for s in SHAPES if s[0] in args.shapes)
    suffix = f"_seeds{args.seeds}" if args.seeds > 1 else ""
    platform = jax.devices()[0].platform
    results: dict[str, dict[str, float]] = {}
    for shape, batch, length, gradient in shapes:
        calls = {name: compiled_call(build(), batch, length, gradient, args.seeds)
                 for name, build in layouts().items()}  # fmt: skip
        inner = max(1, 2000 // (batch * length))  # calls per timing, so tiny ones are measurable
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.repeats):  # round by round, so drift hits every layout alike
            for name, call in calls.items():
                start = time.perf_counter()
                for _ in range(inner):
                    call()
                times[name].append((time.perf_counter() - start) / inner)
        results[shape] = {name: statistics.median(runs) for name, runs in times.items()}
        for name, seconds in results[shape].items():
            print(f"{shape:>14} {name:>28}: {1e3 * seconds:9.3f} ms", flush=True)

    machine = machine_info() | {"platform_name": platform}
    write_json(RESULTS / f"rnn_layout_{platform}{suffix}.json",
               {"machine": machine, "repeats": args.repeats, "width": WIDTH, "seeds": args.seeds,
                "shapes": {s: {"batch": b, "length": t, "gradient": g} for s, b, t, g in shapes},
                "median_seconds": results})  # fmt: skip
    names = list(layouts())
    command = f"python benchmarks/rnn_layout.py --repeats {args.repeats}"
    vmapped = ""
    if args.seeds > 1:
        command += f" --seeds {args.seeds} --shapes " + " ".join(f"'{s[0]}'" for s in shapes)
        vmapped = f" vmapped over {args.seeds} sets of weights and inputs, as ppo_rnn vmaps seeds"
    lines = [
        f"# RNN input projection: in the loop or hoisted ({platform})",
        "",
        f"`{command}`: median ms of the compiled call (loss and gradient; the acting step "
        f"forward only){vmapped}, width 128, and in brackets the time over the hoisted layout of "
        "the same cell (`RNN`'s, what --torso gru, lstm, elman and mgu run).",
        "",
        "| layout | " + " | ".join(f"{s} (B={b}, T={t})" for s, b, t, _ in shapes) + " |",
        "|---|" + "---:|" * len(shapes),
    ]
    for name in names:
        reference = f"{name.split()[0]} hoisted"
        cells = [f"{1e3 * results[s][name]:.3f} ({results[s][name] / results[s][reference]:.2f}x)"
                 for s, *_ in shapes]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {machine['cpu']} x{machine['cpu_count']}, jax {machine['jax']}, "
              f"{machine['date']}."]  # fmt: skip
    atomic_write(RESULTS / f"rnn_layout_{platform}{suffix}.md", ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
