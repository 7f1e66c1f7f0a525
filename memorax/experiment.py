"""Running a script's training as one compiled call for many seeds: keys, device sharding,
compile-and-time, and progress lines from inside the compiled run.

A script writes its own one-seed ``run(key) -> outputs`` and hands it to ``run_seeds`` (as one
hands a function to ``jax.jit``), which vmaps it over seeds, shards the seed axis over the local
devices, compiles it once and runs it. Nothing here knows what an agent is.
"""

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


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


def shard_seeds(tree: Any) -> Any:
    """Place a pytree whose leading axis is the seed axis across all local devices."""
    mesh = Mesh(np.array(jax.local_devices()), ("seeds",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("seeds")))


class Progress:
    """Prints one line per finished chunk of training, once every seed has reported it.

    Called from inside the compiled run through ``jax.debug.callback``; under ``vmap`` each seed
    calls it separately, and with several devices from several threads.
    """

    def __init__(
        self,
        num_chunks: int,
        num_seeds: int,
        steps_per_chunk: int,
        first_step: int = 0,
        stream=sys.stdout,
    ):
        self.num_chunks = num_chunks
        self.first_step = first_step
        self.num_seeds = num_seeds
        self.steps_per_chunk = steps_per_chunk
        self.stream = stream
        self._reports: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        self._start = time.perf_counter()

    def __call__(self, chunk: Any, value: Any) -> None:
        chunk = int(chunk)
        with self._lock:
            reports = self._reports.setdefault(chunk, [])
            reports.append(float(value))
            if len(reports) < self.num_seeds:
                return
            del self._reports[chunk]
            elapsed = time.perf_counter() - self._start
            values = np.asarray(reports)
            print(
                f"[{chunk + 1:>4}/{self.num_chunks}] env steps/seed "
                f"{self.first_step + (chunk + 1) * self.steps_per_chunk:>10,}  greedy eval return "
                f"mean {np.nanmean(values):9.2f}  min {np.nanmin(values):9.2f}  "
                f"max {np.nanmax(values):9.2f}  ({elapsed:6.1f} s)",
                file=self.stream,
                flush=True,
            )

    def report(self, chunk: jax.Array, value: jax.Array) -> None:
        """Call inside the jitted run: report ``value`` (a scalar) for ``chunk``."""
        jax.debug.callback(self, chunk, value)


@dataclass(frozen=True)
class Timing:
    compile_seconds: float
    run_seconds: float


def run_seeds(run: Callable[[jax.Array], Any], keys: jax.Array) -> tuple[Any, Timing]:
    """Compile ``vmap(run)`` once for all seeds, sharded over devices, run it and time both."""
    keys = shard_seeds(keys)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(run)).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    outputs = jax.block_until_ready(compiled(keys))
    return outputs, Timing(compile_seconds=compile_seconds, run_seconds=time.perf_counter() - start)
