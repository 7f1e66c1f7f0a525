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
    rounded = np.round(per_seed.astype(np.float64), 2).tolist()  # float32 rounds to -127.4599...
    print(f"greedy evaluation of {run_dir}: per-seed return {rounded}")
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


def train_in_rounds(
    round_fn: Callable[[Any, jax.Array], tuple[Any, tuple[Any, Any]]],
    key: jax.Array,
    state: Any,
    num_steps: int,
    steps_per_round: int,
    round_flags: str,
) -> tuple[jax.Array, Any, Any]:
    """A script's ``train``: ``num_steps // steps_per_round`` rounds of
    ``round_fn(state, key) -> (state, (transitions, metrics))`` in one scan, each with a fresh
    key split from ``key``. Resumable: n1 then n2 steps equal n1 + n2 steps bit for bit.

    Returns (key, state, transitions): the last round's transitions with ``info["metrics"]``
    holding every round's metrics. ``round_flags`` names the flags that set a round's size, for
    the error when ``num_steps`` is not a whole number of rounds.
    """
    if num_steps % steps_per_round:
        raise ValueError(
            f"train(num_steps={num_steps}) must be a multiple of {round_flags} = {steps_per_round}"
        )

    def one_round(carry, _):
        key, state = carry
        key, round_key = jax.random.split(key)
        state, outputs = round_fn(state, round_key)
        return (key, state), outputs

    (key, state), (transitions, metrics) = jax.lax.scan(
        one_round, (key, state), None, length=num_steps // steps_per_round
    )
    last = jax.tree.map(lambda x: x[-1], transitions)
    return key, state, last.replace(info={**last.info, "metrics": metrics})


def check_replay_schedule(
    *,
    num_envs: int,
    total_timesteps: int,
    learning_starts: int,
    eval_every: int,
    buffer_size: int,
    steps_per_round: int,
    round_flags: str,
    replay_length: int,
    replay_flags: str,
) -> None:
    """An off-policy script's step counts, checked before anything compiles: a ValueError that
    names the flag and the fix for a schedule that cannot run.

    A round is ``steps_per_round`` env steps (all envs) followed by gradient updates; warmup
    (``--learning-starts``) and each evaluation period are whole rounds; each env's share of the
    buffer holds a replayed sequence of ``replay_length`` steps, and warmup fills one per env.
    ``round_flags`` and ``replay_flags`` say which flags set those sizes.
    """
    if buffer_size % num_envs:
        raise ValueError(
            f"--buffer-size ({buffer_size}) must be a multiple of --num-envs ({num_envs}): each "
            f"env gets an equal share"
        )
    for flag, value in (("learning-starts", learning_starts), ("eval-every", eval_every)):
        if value % steps_per_round:
            raise ValueError(
                f"--{flag} ({value}) must be a multiple of {round_flags} = {steps_per_round} "
                f"env steps"
            )
    if total_timesteps <= learning_starts:
        raise ValueError(
            f"--total-timesteps ({total_timesteps}) must exceed --learning-starts "
            f"({learning_starts})"
        )
    training_steps = total_timesteps - learning_starts
    if training_steps % eval_every:
        raise ValueError(
            f"--eval-every ({eval_every}) must divide the {training_steps} training steps "
            f"(--total-timesteps - --learning-starts)"
        )
    if replay_length > buffer_size // num_envs:
        raise ValueError(
            f"a replayed sequence ({replay_flags} = {replay_length}) must fit in one env's share "
            f"of --buffer-size ({buffer_size // num_envs}); raise --buffer-size"
        )
    if learning_starts < replay_length * num_envs:
        raise ValueError(
            f"--learning-starts ({learning_starts}) must hold one replayed sequence per env (at "
            f"least {replay_length * num_envs} env steps)"
        )


def check_replay_buffer(buffer: Any, replay_length: int, num_envs: int, replay_flags: str) -> None:
    """A ValueError unless ``buffer`` samples the sequences the config replays (``replay_length``
    steps, ``replay_flags`` naming the flags that set it) from one row per env."""
    if (buffer.sample_sequence_length, buffer.add_batch_size) != (replay_length, num_envs):
        raise ValueError(
            f"the buffer samples sequences of {buffer.sample_sequence_length} steps from "
            f"{buffer.add_batch_size} env rows; this config replays {replay_flags} = "
            f"{replay_length} steps of --num-envs {num_envs} envs"
        )
