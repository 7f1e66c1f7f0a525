"""Run results on disk: config, per-seed curves, summary, plot and checkpoint.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

import dataclasses
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from memorax.rollout import mean_finished
from memorax.statistics import bootstrap_interval, interquartile_mean


def atomic_write(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_curves(path: str | Path, curves: dict[str, np.ndarray]) -> Path:
    """Per-seed learning curves as .npz: each array is [num_seeds, num_points]."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in curves.items()})
    return atomic_write(path, buffer.getvalue())


def summarise(final_returns: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """IQM across seeds of the final greedy evaluation, with a bootstrap interval."""
    final_returns = np.asarray(final_returns, dtype=np.float64)
    low, high = bootstrap_interval(final_returns, confidence=confidence)
    return {
        "num_seeds": int(final_returns.size),
        "final_eval_return_iqm": interquartile_mean(final_returns),
        "final_eval_return_iqm_ci": [low, high],
        "confidence": confidence,
        "final_eval_return_mean": float(np.mean(final_returns)),
        "final_eval_return_per_seed": final_returns.tolist(),
    }


def save_checkpoint(path: str | Path, params: Any) -> Path:
    """Parameters (any pytree of arrays, seed axis included) as flax msgpack."""
    return atomic_write(path, flax.serialization.to_bytes(params))


def load_checkpoint(path: str | Path, target: Any) -> Any:
    """Restore parameters saved by ``save_checkpoint`` into the structure of ``target``."""
    return flax.serialization.from_bytes(target, Path(path).read_bytes())


def plot_learning_curves(
    path: str | Path, steps: np.ndarray, returns: np.ndarray, title: str, label: str
) -> Path:
    """Mean across seeds (bold) and each seed (thin) of ``returns`` [seeds, points] as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for seed, curve in enumerate(returns):
        ax.plot(steps, curve, lw=0.8, alpha=0.45, label="per seed" if seed == 0 else None)
    ax.plot(steps, np.nanmean(returns, axis=0), color="black", lw=2.2, label="mean over seeds")
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """Create and return a new, empty run folder ``output_dir/<name>-<time>`` (``-2``, ``-3``, ...
    appended when that name is taken: a folder is never reused, however many runs start at
    once), after checking that ``output_dir`` can be written. Call it before compiling, so a
    path that cannot hold results fails in a second, not after the run: a ValueError that names
    --output-dir and the problem."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = atomic_write(output_dir / ".write-probe", b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"--output-dir {output_dir} cannot hold results ({reason}); pass a writable folder"
        ) from None
    base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1, 10_000):
        run_dir = output_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise ValueError(f"--output-dir {output_dir}: no free run folder name for {base}")


def write_run(
    run_dir: str | Path,
    config: Any,
    metrics: dict[str, Any],
    eval_returns: Any,
    params: Any,
    timing: Any,
    steps_per_round: int,
    eval_every: int,
    first_step: int = 0,
) -> Path:
    """Report a finished multi-seed run and write everything it leaves behind in ``run_dir``
    (from ``new_run_dir``):

    config.json, curves.npz (per-seed arrays [seeds, points]: every metric per round, the greedy
    evaluation return, and their env-step axes), summary.json (final greedy-evaluation IQM across
    seeds with a bootstrap interval, and the timing), learning_curve.png and checkpoint.msgpack
    (the parameters of every seed). ``metrics`` leaves are [seeds, rounds], ``eval_returns``
    [seeds, evaluations]; a round is ``steps_per_round`` env steps per seed, an evaluation
    follows every ``eval_every``; ``timing`` is ``memorax.experiment.Timing``. ``first_step`` is
    where training begins on the env-step axis (after an off-policy warmup).
    """
    eval_returns = np.asarray(eval_returns)
    num_seeds, num_evaluations = eval_returns.shape
    num_rounds = num_evaluations * eval_every // steps_per_round
    total_steps = num_seeds * (first_step + num_evaluations * eval_every)
    steps_per_second = total_steps / timing.run_seconds
    print(
        f"compiled in {timing.compile_seconds:.1f} s; ran {total_steps:,} env steps in "
        f"{timing.run_seconds:.1f} s = {steps_per_second:,.0f} env steps/s",
        flush=True,
    )
    round_steps = first_step + steps_per_round * np.arange(1, num_rounds + 1)
    eval_steps = first_step + eval_every * np.arange(1, num_evaluations + 1)
    curves = {
        **{key: np.asarray(value) for key, value in metrics.items()},
        "round_env_steps": np.broadcast_to(round_steps, (num_seeds, num_rounds)),
        "eval_return": eval_returns,
        "eval_env_steps": np.broadcast_to(eval_steps, (num_seeds, num_evaluations)),
    }
    config = config_dict(config)
    run_dir = Path(run_dir)
    write_json(run_dir / "config.json", config)
    write_curves(run_dir / "curves.npz", curves)
    summary = {
        **summarise(eval_returns[:, -1]),
        "compile_seconds": timing.compile_seconds,
        "run_seconds": timing.run_seconds,
        "env_steps_per_second": steps_per_second,
    }
    write_json(run_dir / "summary.json", summary)
    title = f"{run_dir.name} ({num_seeds} seeds, greedy evaluation)"
    plot_learning_curves(
        run_dir / "learning_curve.png", eval_steps, eval_returns, title, "greedy evaluation return"
    )
    save_checkpoint(run_dir / "checkpoint.msgpack", params)
    low, high = summary["final_eval_return_iqm_ci"]
    per_seed = np.round(summary["final_eval_return_per_seed"], 2).tolist()
    print(
        f"final greedy evaluation: IQM {summary['final_eval_return_iqm']:.2f} "
        f"[{low:.2f}, {high:.2f}] ({summary['confidence']:.0%} bootstrap CI over "
        f"{summary['num_seeds']} seeds); per seed {per_seed}\nresults in {run_dir}",
        flush=True,
    )
    return run_dir


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], Path]:
    """The saved config (as a dict) and checkpoint path of a run folder written by write_run."""
    run_dir = Path(run_dir)
    config, checkpoint = run_dir / "config.json", run_dir / "checkpoint.msgpack"
    if not (config.is_file() and checkpoint.is_file()):
        raise ValueError(f"--load {run_dir}: no config.json and checkpoint.msgpack there")
    return json.loads(config.read_text()), checkpoint


def print_evaluation(title: str, returns: Any, finished: Any) -> np.ndarray:
    """Print and return each seed's mean return over its finished episodes (NaN where none
    finished), from ``returns`` and ``finished`` [seeds, episodes]."""
    per_seed = np.asarray(jax.vmap(mean_finished)(returns, finished), np.float64)
    print(f"{title}: per-seed return {np.round(per_seed, 2).tolist()}", flush=True)
    return per_seed
