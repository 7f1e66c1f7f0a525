"""Optional experiment tracking, CleanRL's ``--track``: TensorBoard event files or Weights & Biases.

One tracker run per training run (one config x one seed of a sweep; without a sweep, one per
seed). Neither package is imported unless a tracker is asked for, and neither is needed to train.

    check_tracker(args.track)  # before compiling: a missing package fails in a second
    with open_tracker(args.track, run_dir, name, config, runs) as tracker:
        ...  # tracker.log(run, env_step, {"train/loss": loss}) from jax.debug.callback

Steps must increase per run: W&B drops (with a warning) a value logged at a step lower than one
already logged for that run. Log each run's values in env-step order.
"""

import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb")

# The package each tracker needs, pinned as in requirements.txt (a test keeps them equal).
PACKAGES = {"tensorboard": ("tensorboardX", "2.6.5"), "wandb": ("wandb", "0.31.0")}


def check_tracker(track: str | None) -> None:
    """Raise a one-line ValueError unless ``track`` is None or a tracker whose package is
    installed. Call it before compiling; it imports nothing."""
    if track is None:
        return
    if track not in TRACKERS:
        raise ValueError(f"--track must be one of {', '.join(TRACKERS)} (got {track!r})")
    package, version = PACKAGES[track]
    if importlib.util.find_spec(package) is None:
        raise ValueError(
            f"--track {track} needs the {package} package: pip install {package}=={version}"
        )


def run_labels(runs: list[dict[str, Any]]) -> list[str]:
    """``seed<s>`` for plain seeds, ``config<c>-seed<s>`` once a sweep has several configs or
    swept values."""
    plain = all(run["config"] == 0 and run.keys() == {"config", "seed"} for run in runs)
    labels = [
        f"seed{run['seed']}" if plain else f"config{run['config']}-seed{run['seed']}"
        for run in runs
    ]
    if len(set(labels)) != len(labels):
        raise ValueError(f"tracked runs need distinct (config, seed) pairs, got {labels}")
    return labels


class Tracker:
    """Tracker runs ``0 .. len(runs) - 1``. ``log`` is thread-safe, so jax.debug.callback may
    call it from several threads at once. ``where`` says in one line where to look."""

    where: str

    def __init__(self, where: str):
        self.where = where
        self._lock = threading.Lock()
        self._closed = False

    def log(self, run: int, step: int, values: dict[str, float]) -> None:
        """Log ``values`` (NaN and inf included) for tracker run ``run`` at env step ``step``."""
        values = {name: float(value) for name, value in values.items()}
        with self._lock:
            if self._closed:
                raise RuntimeError("Tracker.log called after close")
            self._write(run, int(step), values)

    def close(self, failed: bool = False) -> None:
        """Flush and finish every run, marked failed when ``failed``. Later calls do nothing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._finish(failed)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(failed=exc_type is not None)

    def _write(self, run: int, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def _finish(self, failed: bool) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """One tensorboardX SummaryWriter per run, in ``run_dir/tensorboard/<label>``. Each run's
    config is a text summary (``config``) and its scalar entries are hparams, so TensorBoard's
    HParams tab lines runs up against their metrics."""

    def __init__(self, run_dir: Path, config: dict[str, Any], runs: list[dict[str, Any]]):
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        log_dir = run_dir / "tensorboard"
        super().__init__(f"tensorboard --logdir {log_dir}")
        self._writers = []
        for run, label in zip(runs, run_labels(runs), strict=True):
            run_config = {**config, **run}
            writer = SummaryWriter(str(log_dir / label))
            writer.add_text("config", f"```json\n{json.dumps(run_config, indent=2)}\n```")
            scalars = {
                key: value
                for key, value in run_config.items()
                if isinstance(value, str | bool | int | float)
            }
            # Only the session start: without an experiment summary TensorBoard builds the
            # table from every run's hparams and scalar tags, which we do not know up front.
            _, session_start, self._session_end = hparams(scalars, {})
            writer.file_writer.add_summary(session_start)
            self._writers.append(writer)

    def _write(self, run: int, step: int, values: dict[str, float]) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        # One event for all values; add_scalar would also warn on every NaN.
        scalars = [Summary.Value(tag=name, simple_value=value) for name, value in values.items()]
        self._writers[run].file_writer.add_summary(Summary(value=scalars), step)

    def _finish(self, failed: bool) -> None:
        for writer in self._writers:
            if not failed:  # a failed run keeps HParams' status "unknown"
                writer.file_writer.add_summary(self._session_end)
            writer.close()


class WandbTracker(Tracker):
    """One W&B run per training run, all in group ``run_name``, files under ``run_dir/wandb``.
    Offline (``WANDB_MODE=offline``) needs no network or login; upload later with wandb sync,
    after the process has exited: W&B's service may still be writing the files when close()
    returns, and its exit hook waits for them."""

    def __init__(
        self,
        run_dir: Path,
        run_name: str,
        config: dict[str, Any],
        runs: list[dict[str, Any]],
        project: str,
        entity: str | None,
    ):
        import wandb

        # silent: W&B's banner and summary are several lines per run (warnings still show).
        # console off: every run in this process would capture the same stdout.
        settings = wandb.Settings(silent=True, console="off")
        self._runs = [
            wandb.init(
                project=project,
                entity=entity,
                name=f"{run_name}-{label}",
                group=run_name,
                config={**config, **run},
                dir=str(run_dir),
                # Several runs alive at once in one process; the default returns the first.
                reinit="create_new",
                settings=settings,
            )
            for run, label in zip(runs, run_labels(runs), strict=True)
        ]
        first = self._runs[0]
        if first.offline:
            where = f"offline; upload with: wandb sync {run_dir / 'wandb'}/offline-run-*"
        else:
            where = first.project_url
        super().__init__(f"wandb: {len(runs)} runs in group {run_name}, {where}")

    def _write(self, run: int, step: int, values: dict[str, float]) -> None:
        self._runs[run].log(values, step=step)

    def _finish(self, failed: bool) -> None:
        for run in self._runs:
            run.finish(exit_code=1 if failed else 0)


def open_tracker(
    track: str | None,
    run_dir: str | Path,
    run_name: str,
    config: dict[str, Any],
    runs: list[dict[str, Any]],
    *,
    wandb_project: str = "memorax",
    wandb_entity: str | None = None,
) -> Tracker | None:
    """A tracker with one run per entry of ``runs`` (``{"config": c, "seed": s, **swept}``),
    each configured with ``{**config, **runs[r]}``; None when ``track`` is None."""
    check_tracker(track)
    if track is None:
        return None
    if not runs:
        raise ValueError("open_tracker needs at least one run")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if track == "tensorboard":
        return TensorBoardTracker(run_dir, config, runs)
    try:
        return WandbTracker(run_dir, run_name, config, runs, wandb_project, wandb_entity)
    except Exception as error:  # no login, no network, a project it may not write to, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(
            f"--track wandb could not start ({first_line}); log in with `wandb login`, or set "
            "WANDB_MODE=offline to log without network"
        ) from None
