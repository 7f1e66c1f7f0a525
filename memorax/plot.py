"""Compare runs: the IQM across seeds with a 95% bootstrap band, one line per (run, config).

    python -m memorax.plot runs/ppo_rnn-...-gru runs/ppo_rnn-...-mlp --output compare.png

Reads each run folder's results.csv (memorax.tables), prints a Markdown table of the final IQM
per line, highest first, and writes the plot. A sweep's configs are separate lines, labelled with
their swept values.
"""

import dataclasses
import io
from pathlib import Path

import numpy as np
import tyro

from memorax.statistics import bootstrap_interval, interquartile_mean
from memorax.tables import EVAL_METRIC, FIXED_COLUMNS

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Args:
    run_dirs: tyro.conf.Positional[tuple[Path, ...]]
    """Run folders, each holding a results.csv."""
    output: Path = Path("compare.png")
    """Where the plot (PNG) is written."""
    metric: str = EVAL_METRIC
    """Metric to compare: any metric of the results.csv files (eval_return, loss, ...)."""
    title: str | None = None
    """Plot title; by default the metric and what the band is."""


Line = tuple[str, np.ndarray, np.ndarray]  # label, env steps [P], values [seeds, P]


def iqm_and_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM across seeds and its bootstrap interval at each point of ``values`` [seeds, P], over
    the seeds whose value there is finite (a diverged seed drops out); NaN where none is."""
    iqm, low, high = np.full((3, values.shape[1]), np.nan)
    for point, column in enumerate(values.T):
        column = column[np.isfinite(column)]
        if column.size:
            iqm[point] = interquartile_mean(column)
            low[point], high[point] = bootstrap_interval(column, confidence=CONFIDENCE)
    return iqm, low, high


def plot_lines(path: str | Path, lines: list[Line], title: str, ylabel: str) -> Path:
    """Draw each line's IQM across seeds with its 95% bootstrap band, env steps on x, and write
    the PNG to ``path`` atomically. Each line is (label, env_steps [P], values [seeds, P])."""
    import matplotlib

    from memorax.results import atomic_write  # here, so memorax.results can import this module

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, steps, values in lines:
        iqm, low, high = iqm_and_interval(np.asarray(values, dtype=np.float64))
        (drawn,) = ax.plot(steps, iqm, lw=2.0, label=label)
        ax.fill_between(steps, low, high, color=drawn.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())


def read_lines(run_dir: Path, metric: str) -> list[Line]:
    """One line per (run, config) of ``run_dir``/results.csv for ``metric``; SystemExit with a
    one-line error for a missing folder, file, column or metric."""
    import pandas

    path = run_dir / "results.csv"
    if not run_dir.is_dir():
        raise SystemExit(f"error: {run_dir} is not a folder")
    if not path.is_file():
        raise SystemExit(f"error: {run_dir} has no results.csv (is it a run folder?)")
    try:
        frame = pandas.read_csv(path)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: cannot read {path}: {error}") from None
    missing = [column for column in FIXED_COLUMNS if column not in frame.columns]
    if missing:
        raise SystemExit(f"error: {path} lacks the columns {missing}")
    if metric not in set(frame.metric):
        found = ", ".join(dict.fromkeys(frame.metric))
        raise SystemExit(f"error: {path} has no metric {metric!r} (it has: {found})")
    columns = list(frame.columns)
    swept = columns[columns.index("config") + 1 : columns.index("seed")]
    frame = frame[frame.metric == metric]
    lines = []
    for (run, _), group in frame.groupby(["run", "config"], sort=False):
        first = group.iloc[0]
        label = " ".join([str(run), *(f"{key}={_short(first[key])}" for key in swept)])
        table = group.pivot(index="seed", columns="env_steps", values="value")
        lines.append((label, table.columns.to_numpy(), table.to_numpy(dtype=np.float64)))
    return lines


def comparison_table(lines: list[Line], metric: str) -> str:
    """Markdown table: per line, the seeds and the final IQM with its interval, highest first."""
    rows = []
    for label, steps, values in lines:
        final = values[:, -1]
        iqm, low, high = (float(x[-1]) for x in iqm_and_interval(values[:, -1:]))
        finite = int(np.isfinite(final).sum())
        seeds = str(final.size) if finite == final.size else f"{finite} of {final.size}"
        rows.append((iqm, label, seeds, int(steps[-1]), f"{iqm:.4g} [{low:.4g}, {high:.4g}]"))
    rows.sort(key=lambda row: -row[0] if np.isfinite(row[0]) else np.inf)
    header = f"| run | seeds | env steps | final {metric}, IQM [{CONFIDENCE:.0%} CI] |"
    text = [header, "|---|---:|---:|---|"]
    text += [f"| {label} | {seeds} | {steps} | {value} |" for _, label, seeds, steps, value in rows]
    return "\n".join(text)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> None:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if not args.run_dirs:
        raise SystemExit("error: name at least one run folder")
    lines = [line for run_dir in args.run_dirs for line in read_lines(run_dir, args.metric)]
    print(comparison_table(lines, args.metric))
    title = args.title or f"{args.metric}: IQM across seeds, {CONFIDENCE:.0%} bootstrap band"
    print(f"wrote {plot_lines(args.output, lines, title, args.metric)}")


if __name__ == "__main__":
    main()
