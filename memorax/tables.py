"""A run's numbers as one long-format CSV, ``results.csv``, that pandas and rliable read.

One row per (config, seed, env step, metric)::

    run,config,learning_rate,seed,env_steps,metric,value
    ppo_rnn-CartPole-P-v1-gru-20250101-120000,1,0.003,0,8192,loss,0.41843554
    ...

Columns: ``run`` (the run folder's name), ``config``, the swept hyper-parameters of a sweep (one
column each), ``seed``, ``env_steps``, ``metric``, ``value``. Training metrics hold one row per
round; greedy evaluation is metric ``eval_return``. Booleans (``finite``) are written 0/1; each
value is written in its array's precision (shortest text that reads back to the same number), NaN
as ``nan``. Read it with ``pandas.read_csv(path)``; rliable wants a [seeds] array per config::

    frame = pandas.read_csv(path)
    final = frame[(frame.metric == "eval_return") & (frame.env_steps == frame.env_steps.max())]
    scores = {config: group.sort_values("seed").value.to_numpy()
              for config, group in final.groupby("config")}
"""

import csv
import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

EVAL_METRIC = "eval_return"
FIXED_COLUMNS = ("run", "config", "seed", "env_steps", "metric", "value")


def write_long_csv(
    path: str | Path,
    run: str,
    runs: list[dict[str, Any]],
    round_steps: np.ndarray,
    metrics: dict[str, np.ndarray],
    eval_steps: np.ndarray,
    eval_returns: np.ndarray,
) -> Path:
    """Write ``results.csv`` (see the module docstring) atomically and return its path.

    ``runs[r]`` names row r of every array, e.g. ``{"config": 1, "seed": 0, "gamma": 0.9}``
    (the same keys in each entry; keys other than config and seed become columns between them).
    ``metrics[name]`` is [R, num_rounds] at env steps ``round_steps`` [num_rounds];
    ``eval_returns`` is [R, num_evals] at ``eval_steps`` [num_evals]."""
    from memorax.results import atomic_write  # here, so memorax.results can import this module

    keys = list(runs[0]) if runs else []
    swept = [key for key in keys if key not in ("config", "seed")]
    _check(runs, keys, swept, round_steps, metrics, eval_steps, eval_returns)
    header = _csv_line(["run", "config", *swept, "seed", "env_steps", "metric", "value"])
    series = [(name, round_steps, values) for name, values in metrics.items()]
    series.append((EVAL_METRIC, eval_steps, eval_returns))
    # Text of every step and value, formatted in C, once: [num_steps] and [R, num_steps].
    series = [
        (_csv_line([name])[:-1], _text(np.asarray(steps, np.int64)), _text(np.asarray(values)))
        for name, steps, values in series
    ]

    def write(file: BinaryIO) -> None:
        file.write(header.encode())
        for row, entry in enumerate(runs):
            prefix = _csv_line(
                [run, entry["config"], *(entry[key] for key in swept), entry["seed"]]
            )[:-1]
            for name, steps, values in series:
                lines = "".join(
                    f"{prefix},{step},{name},{value}\n"
                    for step, value in zip(steps, values[row], strict=True)
                )
                file.write(lines.encode())

    return atomic_write(path, write)


def _check(runs, keys, swept, round_steps, metrics, eval_steps, eval_returns) -> None:
    if not runs:
        raise ValueError("write_long_csv needs at least one entry in runs")
    if "config" not in keys or "seed" not in keys:
        raise ValueError(f"each entry of runs needs 'config' and 'seed' keys, got {keys}")
    for entry in runs:
        if list(entry) != keys:
            raise ValueError(f"every entry of runs needs the keys {keys} in order: {entry}")
    taken = [key for key in swept if key in FIXED_COLUMNS]
    if taken:
        raise ValueError(f"runs keys {taken} clash with the columns {list(FIXED_COLUMNS)}")
    if EVAL_METRIC in metrics:
        raise ValueError(f"metric {EVAL_METRIC!r} is written from eval_returns; rename it")
    shapes = {name: np.shape(values) for name, values in metrics.items()}
    shapes[EVAL_METRIC] = np.shape(eval_returns)
    for name, shape in shapes.items():
        steps = eval_steps if name == EVAL_METRIC else round_steps
        expected = (len(runs), np.size(steps))
        if shape != expected:
            raise ValueError(f"{name} has shape {shape}; expected [len(runs), steps] = {expected}")


def _csv_line(fields: list[Any]) -> str:
    """One CSV line (quoted where a field needs it, e.g. a tuple hyper-parameter)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _text(values: np.ndarray) -> list:
    """Each value as its shortest exact text (numpy's C formatting), booleans as 0/1."""
    if values.dtype == bool:
        values = values.astype(np.int8)
    return values.astype(str).tolist()
