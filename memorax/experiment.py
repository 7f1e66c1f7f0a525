"""Running a script's training as one compiled call for many seeds: keys, device sharding,
compile-and-time, and progress lines from inside the compiled run.

A script writes its own one-seed ``run(key) -> outputs`` and hands it to ``run_seeds`` (as one
hands a function to ``jax.jit``), which vmaps it over seeds (or, with one seed per device, runs
it as it is on each), shards the seed axis over the local devices, compiles it once and runs it.
Nothing here knows what an agent is.
"""

import concurrent.futures
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from memorax.checkpoints import Checkpoints

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """One independent key per seed; seed i of an N-seed run gets the same key as in any other
    N, so a single-seed run with ``seed_keys(seed, N)[i]`` reproduces it."""
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(np.arange(num_seeds))


def check_divides_devices(num_seeds: int, flag: str = "--num-seeds") -> None:
    """Sharding splits seeds evenly over devices; say how to fix a count that does not split."""
    devices = jax.local_device_count()
    if num_seeds % devices:
        raise ValueError(
            f"{flag} ({num_seeds}) must be divisible by the number of local devices ({devices}) "
            f"so seeds shard evenly; use a multiple of {devices}"
        )


def announce_run(what: str, sweep: Any, steps_per_seed: int) -> None:
    """A script's first line: ``what`` runs, then its configs, seeds, steps and devices."""
    configs = f"{sweep.num_configs} configs x " if sweep.names else ""
    print(
        f"{what}, {configs}{sweep.num_seeds} seeds x {steps_per_seed:,} steps on "
        f"{jax.local_device_count()} {jax.devices()[0].platform} device(s); compiling...",
        flush=True,
    )


def _seed_sharding() -> NamedSharding:
    return NamedSharding(Mesh(np.array(jax.local_devices()), ("seeds",)), PartitionSpec("seeds"))


def _over_runs(function: Callable[..., Any], num_runs: int) -> Callable[..., Any]:
    """``function(run, *rest)`` of one run mapped over the leading run axis of its first
    argument (``rest`` passed whole to every run), for ``jax.jit`` over runs placed by
    ``shard_seeds``. With one run per device it is ``function`` itself on each device
    (``shard_map``), compiled without the batch dimension that ``vmap`` adds even to a single
    run; otherwise ``vmap``."""
    if num_runs != jax.local_device_count():
        return lambda runs, *rest: jax.vmap(lambda run: function(run, *rest))(runs)
    mesh = Mesh(np.array(jax.local_devices()), ("seeds",))

    def one_run(runs, *rest):
        outputs = function(jax.tree.map(lambda x: x[0], runs), *rest)
        return jax.tree.map(lambda x: x[None], outputs)

    def on_devices(runs, *rest):
        in_specs = (PartitionSpec("seeds"), *(PartitionSpec() for _ in rest))
        mapped = jax.shard_map(  # each device's run is its own: no cross-device checks
            one_run, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec("seeds"),
            check_vma=False,
        )  # fmt: skip
        return mapped(runs, *rest)

    return on_devices


def shard_seeds(tree: Any) -> Any:
    """Place a pytree whose leading axis is the seed axis across all local devices."""
    return jax.device_put(tree, _seed_sharding())


def _seed_sharded(shapes: Any) -> Any:
    """``jax.ShapeDtypeStruct``s of arrays placed as ``shard_seeds`` places them."""
    sharding = _seed_sharding()
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


class Progress:
    """Prints one line per finished chunk of training, once every run has reported it, and hands
    every report to a ``memorax.tracking`` tracker as it comes, when there is one.

    Called from inside the compiled run through ``jax.debug.callback``; under ``vmap`` each run
    (a seed, or a config and seed of a sweep) calls it separately, and with several devices from
    several threads.
    """

    def __init__(
        self,
        num_chunks: int,
        num_seeds: int,
        steps_per_chunk: int,
        first_step: int = 0,
        stream=None,
        tracker: Any = None,
    ):
        self.num_chunks = num_chunks
        self.first_step = first_step
        self.num_seeds = num_seeds
        self.steps_per_chunk = steps_per_chunk
        self.stream = stream  # None: sys.stdout when printing (not the one at import)
        self.tracker = tracker
        self._reports: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._last: float | None = None
        if tracker is not None:
            print(f"tracking: {tracker.where}", file=stream or sys.stdout, flush=True)

    def __call__(self, chunk: Any, value: Any, run: Any = None, metrics: Any = None) -> None:
        chunk = int(chunk)
        if self.tracker is not None and run is not None:
            self._track(int(run), chunk, float(value), metrics or {})
        with self._lock:
            reports = self._reports.setdefault(chunk, [])
            reports.append(float(value))
            if len(reports) < self.num_seeds:
                return
            del self._reports[chunk]
            now = time.perf_counter()
            elapsed, last, self._last = now - self._start, self._last, now
            values = np.asarray(reports)
            print(
                f"[{chunk + 1:>4}/{self.num_chunks}] env steps/seed "
                f"{self.first_step + (chunk + 1) * self.steps_per_chunk:>10,}  greedy eval return "
                f"mean {np.nanmean(values):9.2f}  min {np.nanmin(values):9.2f}  "
                f"max {np.nanmax(values):9.2f}  ({elapsed:6.1f} s)",
                file=self.stream or sys.stdout,
                flush=True,
            )
        if self.tracker is not None and last is not None:  # the first chunk's time has compiling
            rate = self.num_seeds * self.steps_per_chunk / (now - last)
            step = self.first_step + (chunk + 1) * self.steps_per_chunk
            for run in range(self.num_seeds):
                self.tracker.log(run, step, {"perf/env_steps_per_second": rate})

    def _track(self, run: int, chunk: int, value: float, metrics: dict[str, Any]) -> None:
        """Log a run's chunk: each round's training metrics at the env step where the round
        ends (rounds split the chunk evenly), then the greedy evaluation return."""
        begin = self.first_step + chunk * self.steps_per_chunk
        rows = {
            name: np.asarray(values, np.float64).reshape(-1) for name, values in metrics.items()
        }
        num_rounds = max((row.size for row in rows.values()), default=0)
        for k in range(num_rounds):
            step = begin + (k + 1) * self.steps_per_chunk // num_rounds
            self.tracker.log(run, step, {f"train/{n}": float(r[k]) for n, r in rows.items()})
        self.tracker.log(run, begin + self.steps_per_chunk, {"eval/return": value})

    def report(self, chunk: jax.Array, value: jax.Array) -> None:
        """Call inside the jitted run: report ``value`` (a scalar) for ``chunk``."""
        jax.debug.callback(self, chunk, value)

    def close(self) -> None:
        """Finish the tracker's runs, if there is a tracker, once every report has reached it."""
        if self.tracker is not None:
            jax.effects_barrier()
            self.tracker.close()

    def for_run(self, run: jax.Array) -> "RunProgress":
        """The reporter for run ``run`` (an index inside the compiled run)."""
        return RunProgress(self, run)


@dataclass(frozen=True)
class RunProgress:
    """``Progress`` for one run: its reports carry the run's index, and, when a tracker is
    listening, the chunk's training metrics (one value per round)."""

    progress: Progress
    run: Any

    def report(self, chunk: jax.Array, value: jax.Array, metrics: Any = None) -> None:
        """Call inside the jitted run: ``value`` (a scalar) for ``chunk``, and ``metrics`` (a
        dict of [rounds] arrays) when a tracker is listening."""
        tracked = metrics if self.progress.tracker is not None else None
        jax.debug.callback(self.progress, chunk, value, self.run, tracked)


@dataclass(frozen=True)
class Timing:
    compile_seconds: float
    run_seconds: float


class _Interrupts:
    """SIGINT and SIGTERM while a run trains. A first signal asks the run to stop at the end of
    the segment in progress, once its checkpoint is saved; a second one (or the first, in a run
    that saves nothing) stops the process at once, except while a checkpoint is being written,
    which is then finished first, so no file is ever left half written."""

    def __init__(self, checkpoints: Checkpoints):
        self.checkpoints = checkpoints
        self.requested = False
        self.saving = False
        self.exit_after_save = False

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not self.checkpoints.every:
            shutil.rmtree(self.checkpoints.run_dir, ignore_errors=True)
            _exit_now(
                f"\n{name}: stopped; this run saved no checkpoints (--checkpoint-every is off), so "
                f"nothing of it is kept ({self.checkpoints.run_dir} removed)"
            )
        if self.saving:
            self.exit_after_save = True
        elif self.requested:
            _exit_now(f"\n{name} again: stopped at once. {self._resume_line()}")
        else:
            self.requested = True
            print(
                f"\n{name}: stopping once the segment in progress is saved "
                "(send it again to stop at once, losing that segment)",
                flush=True,
            )

    def _resume_line(self) -> str:
        if not self.checkpoints.has_state():
            return "No checkpoint had been saved yet; nothing is kept."
        return f"Go on from the last checkpoint with:\n  {self.checkpoints.resume_command}"


def _exit_now(message: str) -> None:
    print(message, flush=True)
    os._exit(130)  # the compiled call cannot be cancelled; leave without waiting for it


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(``function(*args)`` run to completion, its arrays ready; the seconds it took). It runs in
    a worker thread while the main thread waits in short sleeps, so that a signal's handler acts
    within a fraction of a second, not after a compiled call that may take hours."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: jax.block_until_ready(function(*args)))
        while True:
            try:
                return future.result(timeout=0.2), time.perf_counter() - start
            except concurrent.futures.TimeoutError:
                continue


def run_seeds(run: Callable[[jax.Array], Any], keys: jax.Array) -> tuple[Any, Timing]:
    """Compile ``vmap(run)`` once for all seeds (``run`` itself with one seed per device),
    sharded over devices, run it and time both. The main thread waits in short sleeps, so a
    signal handler can act while it runs."""
    keys = shard_seeds(keys)
    num_runs = len(jax.tree.leaves(keys)[0])
    compiled, compile_seconds = _timed(jax.jit(_over_runs(run, num_runs)).lower(keys).compile)
    outputs, run_seconds = _timed(compiled, keys)
    return outputs, Timing(compile_seconds=compile_seconds, run_seconds=run_seconds)


def _start_options() -> dict[str, int]:
    """XLA options for a run's start (init, warmup), which runs once. On a CPU its program, the
    hundreds of small fusions that draw the initial parameters, took longer to compile than to
    run: LLVM at optimisation level 1 (XLA's default is 3) compiles it 1.8-2.8x faster and gives
    the same carry, bit for bit (benchmarks/results/start_compile_cpu.md). Other backends keep
    their default."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else {}


def run_once(function: Callable[..., Any], *args: Any) -> Any:
    """``jax.jit(function)(*args)`` compiled as a run's start is, for a program that runs once:
    ``--load``'s init of every run, which took 24 s op by op for SAC's S5 and takes 5 s so."""
    return jax.jit(function).lower(*args).compile(_start_options())(*args)


def train_seeds(
    start: Callable[[jax.Array], Any],
    train: Callable[[Any, Any, int], tuple[Any, Any]],
    keys: jax.Array,
    num_periods: int,
    checkpoints: Checkpoints,
) -> tuple[Any, Any, Timing]:
    """Train every seed from the script's ``start(key) -> carry`` (init, warmup) with its
    ``train(carry, first_period, n) -> (carry, outputs)`` (n evaluation periods; every leaf of
    ``outputs`` has a leading period-ordered axis), vmapped and sharded over devices. Returns
    (carry, outputs, timing), seed axis first.

    ``start`` is compiled on its own (``_start_options``) and run first. With
    ``checkpoints.every == 0`` the whole training is then one compiled call (``run_seeds``).
    Otherwise ``train`` runs in segments of ``every`` periods, one compiled function for all of
    them, and the carry and outputs so far are saved after each; a folder that already holds a
    checkpoint is resumed from it, and the result is the same, bit for bit, as that of a run
    never stopped. SIGINT and SIGTERM stop the run as ``_Interrupts`` says."""
    with _Interrupts(checkpoints) as interrupts:
        keys = shard_seeds(keys)
        num_runs = len(jax.tree.leaves(keys)[0])
        seeds = _seed_sharding()  # segments hand their carry on: keep it where it was
        start_time = time.perf_counter()
        lowered_start = jax.jit(_over_runs(start, num_runs), out_shardings=seeds).lower(keys)
        if not checkpoints.every:
            compiled_start, _ = _timed(lowered_start.compile, _start_options())
            compile_seconds = time.perf_counter() - start_time
            carry, run_seconds = _timed(compiled_start, keys)
            (carry, outputs), timing = run_seeds(lambda c: train(c, 0, num_periods), carry)
            compile_seconds += timing.compile_seconds
            return carry, outputs, Timing(compile_seconds, run_seconds + timing.run_seconds)
        resuming = checkpoints.has_state()
        every = checkpoints.every
        segment = jax.jit(
            _over_runs(lambda carry, first: train(carry, first, every), num_runs),
            out_shardings=seeds,
        )
        carry_shape = _seed_sharded(lowered_start.out_info)
        lowered = segment.lower(carry_shape, np.int32(0))
        compile_seconds = time.perf_counter() - start_time
        if resuming:  # read before compiling: a checkpoint that does not fit fails in a second
            try:
                period, carry, outputs, run_seconds = checkpoints.load(
                    carry_shape, lowered.out_info[1]
                )
            except ValueError as error:
                raise SystemExit(f"error: {error}") from None
            carry = shard_seeds(carry)
            print(f"resuming {checkpoints.run_dir} after evaluation period {period}", flush=True)
        compiled, seconds = _timed(lowered.compile)
        compile_seconds += seconds
        if not resuming:
            compiled_start, seconds = _timed(lowered_start.compile, _start_options())
            carry, run_seconds = _timed(compiled_start, keys)
            compile_seconds, period, outputs = compile_seconds + seconds, 0, None
        while period < num_periods:
            (carry, new), seconds = _timed(compiled, carry, np.int32(period))
            outputs = new if outputs is None else _concatenate(outputs, new)
            period += every
            run_seconds += seconds
            interrupts.saving = True
            _, seconds = _timed(checkpoints.save, period, carry, outputs, run_seconds)
            interrupts.saving = False
            run_seconds += seconds  # saving is part of the run's time
            print(f"checkpoint after evaluation period {period}/{num_periods} saved", flush=True)
            if interrupts.requested or interrupts.exit_after_save:
                _exit_now(
                    f"stopped after evaluation period {period} of {num_periods}, "
                    f"checkpoint saved. {interrupts._resume_line()}"
                )
        return carry, outputs, Timing(compile_seconds, run_seconds)


def _concatenate(before: Any, after: Any) -> Any:
    """Outputs of successive segments joined along the period axis (axis 1; 0 is seeds)."""
    return jax.tree.map(lambda a, b: np.concatenate([a, b], axis=1), before, after)
