"""Running one compiled training call for many seeds: keys, device sharding, progress, timing,
the one-seed run loop every script compiles, and re-evaluating a saved run (``--load``).

A script builds ``run(key) -> outputs`` for one seed and hands it to ``run_seeds``, which vmaps
it over seeds, shards the seed axis over the local devices, compiles it once and runs it.
"""

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from memorax.environments import make
from memorax.results import load_checkpoint, read_run
from memorax.rollout import evaluation_steps, mean_finished


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
    return outputs, Timing(compile_seconds, time.perf_counter() - start)


def machine_info() -> dict[str, Any]:
    """What a benchmark ran on, to commit beside its numbers."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(device) for device in jax.devices()],
        "date": time.strftime("%Y-%m-%d"),
    }


def evaluate_saved_run(
    run_dir: str, config_type: type, make_agent: Callable, seed: int, eval_episodes: int
) -> np.ndarray:
    """A script's ``--load``: rebuild the saved run's agent from its config.json, restore every
    seed's parameters from its checkpoint, evaluate each seed greedily on ``eval_episodes`` fresh
    envs and print the per-seed returns. ``make_agent(cfg, env, env_params)`` builds an agent
    with the scripts' ``init`` and ``evaluate``; its state has ``params``."""
    saved, checkpoint = read_run(run_dir)
    cfg = dataclasses.replace(config_type(**{**saved, "load": None}), eval_episodes=eval_episodes)
    env, env_params = make(cfg.env_id)
    agent = make_agent(cfg, env, env_params)
    keys = seed_keys(seed, cfg.num_seeds)
    _, states = jax.vmap(agent.init)(keys)
    states = states.replace(params=load_checkpoint(checkpoint, states.params))
    steps = evaluation_steps(env_params)
    evaluate = jax.jit(jax.vmap(lambda key, state: agent.evaluate(key, state, steps)))
    _, returns, finished = evaluate(keys, states)
    per_seed = np.asarray(jax.vmap(mean_finished)(returns, finished))
    print(f"greedy evaluation of {run_dir}: per-seed return {np.round(per_seed, 2).tolist()}")
    return per_seed


def train_with_evaluations(
    agent: Any,
    warmup_steps: int,
    steps_per_evaluation: int,
    num_evaluations: int,
    evaluation_steps: int,
    progress: Progress,
) -> Callable[[jax.Array], tuple[Any, Any, jax.Array]]:
    """The one-seed run every script compiles: ``init``, ``warmup`` (off-policy: fill the buffer),
    then ``num_evaluations`` times ``train`` for ``steps_per_evaluation`` env steps followed by a
    greedy ``evaluate`` of ``evaluation_steps`` steps, reported to ``progress``.

    Returns ``run(key) -> (params, metrics, eval_return)``: metrics leaves [updates] (the
    ``train`` calls' ``info["metrics"]`` rows end to end), eval_return [num_evaluations] (NaN
    where no evaluation episode finished). Hand it to ``run_seeds``.
    """

    def run(key: jax.Array):
        key, state = agent.init(key)
        key, state = agent.warmup(key, state, warmup_steps)

        def chunk(carry, index):
            key, state = carry
            key, state, transitions = agent.train(key, state, steps_per_evaluation)
            key, returns, finished = agent.evaluate(key, state, evaluation_steps)
            eval_return = mean_finished(returns, finished)
            progress.report(index, eval_return)
            return (key, state), (transitions.info["metrics"], eval_return)

        (_, state), (metrics, eval_return) = jax.lax.scan(
            chunk, (key, state), np.arange(num_evaluations)
        )
        return state.params, jax.tree.map(lambda x: x.reshape(-1), metrics), eval_return

    return run
