"""Run results on disk: config, per-seed curves, summary, plot and checkpoint.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import flax.serialization
import jax
import numpy as np

from memorax.divergence import first_nonfinite
from memorax.rollout import mean_finished
from memorax.statistics import bootstrap_interval, interquartile_mean


def atomic_write(path: str | Path, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, or a function that writes to the open file) to ``path`` through a
    temporary file in the same folder, renamed into place once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
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
    num_seeds = final_returns.size
    if not num_seeds:  # every seed diverged: the statistics are NaN
        final_returns = np.array([np.nan])
    low, high = bootstrap_interval(final_returns, confidence=confidence)
    return {
        "num_seeds": num_seeds,
        "final_eval_return_iqm": interquartile_mean(final_returns),
        "final_eval_return_iqm_ci": [low, high],
        "confidence": confidence,
        "final_eval_return_mean": float(np.mean(final_returns)),
        "final_eval_return_per_seed": final_returns.tolist(),
    }


def save_checkpoint(path: str | Path, params: Any) -> str:
    """Parameters (any pytree of arrays, seed axis included) as flax msgpack; returns the file's
    SHA-256, which summary.json keeps so that a damaged file is refused when loaded."""
    data = flax.serialization.to_bytes(params)
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | Path, target: Any) -> Any:
    """Restore parameters saved by ``save_checkpoint`` into the structure of ``target``; a
    ValueError if the file does not hold parameters of that structure."""
    try:
        return flax.serialization.from_bytes(target, Path(path).read_bytes())
    except Exception as error:  # msgpack and flax raise many kinds on a file that does not fit
        raise ValueError(f"{path} does not hold this run's parameters ({error})") from None


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


def config_dict(config: Any, script: str, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json's contents: the script that wrote it, the env it trains on (``run_env``'s
    record), then every field of its config."""
    return {"script": script, **({"env": env} if env else {}), **dataclasses.asdict(config)}


def run_env(
    env_id: str,
    make: Callable[[str], tuple[Any, Any]],
    env: Any = None,
    env_params: Any = None,
    *,
    load: str | Path | None = None,
    resume: str | Path | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """(env, env_params, record) of a run: ``record`` goes in config.json (``config_dict``) so
    that --load and --resume rebuild the env the run trained on, or refuse.

    A new run (neither ``load`` nor ``resume``) trains on ``make(env_id)``, or on the ``env`` and
    ``env_params`` a user built, recorded as user-built: its class and params, no id. A saved
    run (the folder ``load`` or ``resume``) gets its registered env back from ``make`` (or, when
    ``env`` is given, runs on that, as asked); a user-built one
    cannot be rebuilt from a name, so ``env`` and ``env_params`` must be passed again (from
    Python) and must match the record; a run written before records existed was made from its
    ``env_id``. A ValueError naming the flag otherwise, and for params from which evaluation
    cannot know an episode's length (``memorax.rollout.evaluation_steps``)."""
    from memorax.rollout import evaluation_steps

    saved, run_dir, flag = None, load or resume, "--load" if load else "--resume"
    if run_dir is not None:
        saved = json.loads((Path(run_dir) / "config.json").read_text()).get("env")
        saved = saved or {"id": env_id}
        if env is None and saved["id"] is None:
            raise ValueError(
                f"{flag} {run_dir}: the run trained on a user-built env ({saved['class']}), which "
                "cannot be rebuilt from its name: pass that env and its params again from Python "
                "(README, 'Your own env')"
            )
    if env is None:
        env_id = env_id if saved is None else saved["id"]
        env, env_params = make(env_id)
    elif env_params is None:
        raise ValueError("a user-built env needs its env_params too")
    else:
        env_id = None
    evaluation_steps(env_params)
    kind = type(env)
    params = {"repr": repr(env_params)}
    if dataclasses.is_dataclass(env_params):
        params = {
            field.name: np.asarray(getattr(env_params, field.name)).tolist()
            for field in dataclasses.fields(env_params)
        }
    record = {
        "id": env_id,
        "name": env_id or kind.__name__,
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "params": json.loads(json.dumps(params)),
    }
    if saved is not None and saved["id"] is None and saved != record:
        raise ValueError(
            f"{flag} {run_dir}: the run trained on {saved['class']} with params "
            f"{saved['params']}, not on the {record['class']} with params {record['params']} "
            "given; pass the env it trained on"
        )
    return env, env_params, record


def new_run_dir(output_dir: str | Path, name: str, config: dict[str, Any] | None = None) -> Path:
    """Create and return a new, empty run folder ``output_dir/<name>-<time>`` (``-2``, ``-3``, ...
    appended when that name is taken: a folder is never reused, however many runs start at
    once), after checking that ``output_dir`` can be written, and write ``config`` (from
    ``config_dict``) there as config.json. Call it before compiling, so a path that cannot hold
    results fails in a second, not after the run: a ValueError that names --output-dir and the
    problem."""
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
        except FileExistsError:
            continue
        if config is not None:
            write_json(run_dir / "config.json", config)
        return run_dir
    raise ValueError(f"--output-dir {output_dir}: no free run folder name for {base}")


def write_run(
    run_dir: str | Path,
    config: dict[str, Any],
    metrics: dict[str, Any],
    eval_returns: Any,
    params: Any,
    timing: Any,
    steps_per_round: int,
    eval_every: int,
    first_step: int = 0,
    sweep: Any = None,
) -> dict[str, Any]:
    """Report a finished run of many seeds (or a sweep: many configs x seeds), write everything
    it leaves behind in ``run_dir`` (from ``new_run_dir``) and return its summary.

    config.json (``config`` from ``config_dict``), curves.npz (per-run arrays [runs, points]:
    every metric per round, the greedy evaluation return, and their env-step axes; ``config``
    and ``seed`` say which run a row is), results.csv (the same in long format, for pandas and
    rliable: ``memorax.tables``), learning_curve.png, checkpoint.msgpack (the parameters of
    every run) and, last, so that its presence means the run is complete, summary.json (final
    greedy-evaluation IQM across seeds with a bootstrap interval, per config in a sweep with the
    best one named, the timing, the checkpoint's SHA-256 and the diverged runs).
    ``metrics`` leaves are [runs, rounds], among them ``finite`` (``memorax.divergence``: False
    from the round where a run's losses, parameters or evaluation first held NaN or inf);
    ``eval_returns`` [runs, evaluations]; a round is ``steps_per_round`` env steps per seed, an
    evaluation follows every ``eval_every``; ``timing`` is ``memorax.experiment.Timing``.
    ``first_step`` is where training begins on the env-step axis (after an off-policy warmup).
    ``sweep`` (``memorax.sweep.Sweep``; None: one config, a run per seed) says which config and
    seed each run is. A diverged run is named with its round, left out of the IQM (its return
    is NaN in the summary) and marks the summary ``diverged``; the others are written as usual.
    """
    from memorax.tables import write_long_csv

    eval_returns = np.asarray(eval_returns)
    num_runs, num_evaluations = eval_returns.shape
    runs = (
        sweep.runs() if sweep is not None else [{"config": 0, "seed": j} for j in range(num_runs)]
    )
    num_configs = 1 + max(run["config"] for run in runs)
    num_rounds = num_evaluations * eval_every // steps_per_round
    total_steps = num_runs * (first_step + num_evaluations * eval_every)
    steps_per_second = total_steps / timing.run_seconds
    print(
        f"compiled in {timing.compile_seconds:.1f} s; ran {total_steps:,} env steps in "
        f"{timing.run_seconds:.1f} s = {steps_per_second:,.0f} env steps/s",
        flush=True,
    )
    round_steps = first_step + steps_per_round * np.arange(1, num_rounds + 1)
    eval_steps = first_step + eval_every * np.arange(1, num_evaluations + 1)
    configs = np.array([run["config"] for run in runs])
    curves = {
        **{key: np.asarray(value) for key, value in metrics.items()},
        "round_env_steps": np.broadcast_to(round_steps, (num_runs, num_rounds)),
        "eval_return": eval_returns,
        "eval_env_steps": np.broadcast_to(eval_steps, (num_runs, num_evaluations)),
        "config": configs,
        "seed": np.array([run["seed"] for run in runs]),
    }
    diverged = first_nonfinite(metrics["finite"])
    final_returns = eval_returns[:, -1].astype(np.float64)
    final_returns[list(diverged)] = np.nan
    run_dir = Path(run_dir)
    write_json(run_dir / "config.json", config)
    write_curves(run_dir / "curves.npz", curves)
    write_long_csv(
        run_dir / "results.csv", run_dir.name, runs, round_steps, metrics, eval_steps, eval_returns
    )
    per_config = []
    for i in range(num_configs):
        returns = final_returns[configs == i]
        values = sweep.configs[i] if sweep is not None else {}
        per_config.append(
            {"config": i, "values": values, **summarise(returns[np.isfinite(returns)])}
        )
        per_config[-1]["final_eval_return_per_seed"] = returns.tolist()
    best = max(
        range(num_configs),
        key=lambda i: np.nan_to_num(per_config[i]["final_eval_return_iqm"], nan=-np.inf),
    )
    _plot_run(run_dir, eval_steps, eval_returns, configs, sweep)
    summary = {
        **{
            key: value for key, value in per_config[best].items() if key not in ("config", "values")
        },
        "diverged": bool(diverged),
        "diverged_seeds": {run: int(round_steps[r]) for run, r in diverged.items()},
        "script": config.get("script"),
        "checkpoint_sha256": save_checkpoint(run_dir / "checkpoint.msgpack", params),
        "compile_seconds": timing.compile_seconds,
        "run_seconds": timing.run_seconds,
        "env_steps_per_second": steps_per_second,
    }
    if sweep is not None and sweep.names:
        summary = {"configs": per_config, "best_config": best, **summary}
    write_json(run_dir / "summary.json", summary)
    for run, env_steps in summary["diverged_seeds"].items():
        print(
            f"DIVERGED: {_run_name(runs[run], sweep)} from the round ending at env step "
            f"{env_steps:,}: NaN or inf in its losses, parameters or evaluation; left out of the "
            "IQM",
            flush=True,
        )
    for row in per_config:
        low, high = row["final_eval_return_iqm_ci"]
        label = (
            f" of config {row['config']} ({sweep.label(row['config'])})"
            if "configs" in summary
            else ""
        )
        print(
            f"final greedy evaluation{label}: IQM {row['final_eval_return_iqm']:.2f} "
            f"[{low:.2f}, {high:.2f}] ({row['confidence']:.0%} bootstrap CI over "
            f"{row['num_seeds']} seeds); per seed "
            f"{np.round(row['final_eval_return_per_seed'], 2).tolist()}",
            flush=True,
        )
    if "configs" in summary:
        print(f"best: config {best} ({sweep.label(best)})", flush=True)
    print(f"{'the run DIVERGED; ' if diverged else ''}results in {run_dir}", flush=True)
    return summary


def _run_name(run: dict[str, Any], sweep: Any) -> str:
    if sweep is None or not sweep.names:
        return f"seed {run['seed']}"
    return f"config {run['config']} ({sweep.label(run['config'])}), seed {run['seed']}"


def _plot_run(run_dir: Path, eval_steps, eval_returns, configs, sweep) -> None:
    """learning_curve.png: each seed and their mean; in a sweep, a line per config (IQM across
    its seeds with a bootstrap band)."""
    title = f"{run_dir.name} ({int(np.sum(configs == 0))} seeds, greedy evaluation)"
    path, label = run_dir / "learning_curve.png", "greedy evaluation return"
    if sweep is None or not sweep.names:
        plot_learning_curves(path, eval_steps, eval_returns, title, label)
        return
    from memorax.plot import plot_lines

    lines = [
        (sweep.label(i), eval_steps, eval_returns[configs == i]) for i in range(sweep.num_configs)
    ]
    plot_lines(path, lines, title, label)


def read_config(
    run_dir: str | Path, flag: str, script: str, config_class: type, **overrides: Any
) -> Any:
    """The config of the run in ``run_dir`` as ``config_class`` with ``overrides``, for ``flag``
    (``--load`` or ``--resume``); a ValueError naming ``flag`` and the fix if the folder is not a
    run of ``script`` that this version of it can read."""
    run_dir, where = Path(run_dir), f"{flag} {run_dir}"
    if not (run_dir / "config.json").is_file():
        what = "no such folder" if not run_dir.is_dir() else "not a run folder (no config.json)"
        raise ValueError(f"{where}: {what}")
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: config.json is damaged ({error})") from None
    origin = saved.pop("script", script)
    saved.pop("env", None)  # run_env's record: which env, not how to train on it
    if origin != script:
        raise ValueError(f"{where} is a run of {origin}: use algorithms/{origin}.py {flag}")
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise ValueError(
            f"{where}: its config.json has {', '.join(map(repr, unknown))}, which this "
            f"{script} does not know (written by another version of it)"
        )
    saved = {key: tuple(v) if isinstance(v, list) else v for key, v in saved.items()}  # JSON
    return config_class(**{**saved, **overrides})


@contextlib.contextmanager
def user_errors():
    """A script's setup: a ValueError (a user's mistake, which names the flag and the fix)
    leaves as ``error: <message>`` on one line and exit status 1, without a traceback."""
    try:
        yield
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def read_run(run_dir: str | Path, script: str, config_class: type, **overrides: Any):
    """``--load``: (config, checkpoint path) of a finished run of ``script`` (see read_config),
    its checkpoint checked against the SHA-256 in summary.json; a ValueError naming --load and
    the fix otherwise."""
    config = read_config(run_dir, "--load", script, config_class, **overrides)
    run_dir = Path(run_dir)
    summary, checkpoint = run_dir / "summary.json", run_dir / "checkpoint.msgpack"
    if not summary.is_file():
        resumable = (run_dir / "checkpoints" / "latest.json").is_file()
        raise ValueError(
            f"--load {run_dir}: the run did not finish"
            + (f"; go on with --resume {run_dir}" if resumable else " and kept no checkpoint")
        )
    expected = json.loads(summary.read_text()).get("checkpoint_sha256")
    if not checkpoint.is_file() or hashlib.sha256(checkpoint.read_bytes()).hexdigest() != expected:
        raise ValueError(f"--load {run_dir}: checkpoint.msgpack is missing or damaged (SHA-256)")
    return config, checkpoint


def check_flags_beside(flag: str, allowed: tuple[str, ...] = (), argv: list[str] | None = None):
    """A ValueError naming the first command-line flag in ``argv`` (default: this process's)
    other than ``flag`` and ``allowed``: beside ``flag`` the saved run's config decides
    everything else, and a flag that would be silently ignored is refused instead."""
    for token in sys.argv[1:] if argv is None else argv:
        name = token.split("=")[0]
        if name.startswith("--") and name not in (flag, *allowed):
            also = f"; only {', '.join(allowed)} may be given with it" if allowed else ""
            raise ValueError(
                f"{name} cannot be used with {flag}: the saved run's config.json decides it{also}"
            )


def check_saved_run_flags(load: str | None, resume: str | None) -> None:
    """Exit with one line for a command-line flag beside --load (only --eval-episodes and
    --seed may be) or --resume (none may be): the saved run's config decides the rest."""
    with user_errors():
        if load is not None:
            check_flags_beside("--load", ("--eval-episodes", "--seed"))
        elif resume is not None:
            check_flags_beside("--resume")


def print_evaluation(title: str, returns: Any, finished: Any, sweep: Any = None) -> np.ndarray:
    """Print and return each run's mean return over its finished episodes (NaN where none
    finished), from ``returns`` and ``finished`` [runs, episodes]: one line of seeds, or one per
    config of a ``memorax.sweep.Sweep`` with swept values."""
    per_run = np.asarray(jax.vmap(mean_finished)(returns, finished), np.float64)
    if sweep is None or not sweep.names:
        print(f"{title}: per-seed return {np.round(per_run, 2).tolist()}", flush=True)
        return per_run
    for i, row in enumerate(per_run.reshape(sweep.num_configs, sweep.num_seeds)):
        print(
            f"{title}, config {i} ({sweep.label(i)}): per-seed return {np.round(row, 2).tolist()}",
            flush=True,
        )
    return per_run
