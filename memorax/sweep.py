"""Hyper-parameter sweeps in one compiled call: ``--sweep NAME=v1,v2,...``.

A sweep is K configs (the grid of the values given, or ``--sweep-mode zip``) times the run's
seeds: K x S runs that a script trains as one vmapped, device-sharded call, exactly as it trains
S seeds. Run r is config r // S with seed r % S, and seed j of every config gets the key that
seed j of a plain run gets, so config i, seed j of a sweep is the plain run with config i's
values and seed j (to float rounding: the values are arrays inside the compiled run, not
constants).

Only a float flag can be swept: a value that is an array inside the compiled run leaves every
shape and loop length as it was. A script names the float flags that still set a shape or a
loop length (``fixed``), and ``parse_sweep`` refuses them, and every int, bool and str flag, by
name with the reason. Nothing here knows what an agent is: the script builds its agent from its
config with the swept values in it (``with_values``) inside the compiled run.
"""

import copy
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from memorax.experiment import seed_keys

SWEEP_MODES = ("grid", "zip")


@dataclass(frozen=True)
class Sweep:
    """K configs of swept values (``configs[i]`` maps each swept name to its value) x
    ``num_seeds`` seeds. A run without ``--sweep`` is one config with no swept names."""

    names: tuple[str, ...]
    configs: tuple[dict[str, float], ...]
    num_seeds: int

    @property
    def num_configs(self) -> int:
        return len(self.configs)

    @property
    def num_runs(self) -> int:
        return self.num_configs * self.num_seeds

    def runs(self) -> list[dict[str, Any]]:
        """One entry per run, in run order: its config index, swept values and seed."""
        return [
            {"config": i, **values, "seed": j}
            for i, values in enumerate(self.configs)
            for j in range(self.num_seeds)
        ]

    def inputs(self, seed: int) -> tuple[np.ndarray, jax.Array, dict[str, np.ndarray]]:
        """What ``swept`` functions take, one row per run: (run index, key, swept values)."""
        keys = seed_keys(seed, self.num_seeds)
        keys = jax.random.wrap_key_data(np.tile(jax.random.key_data(keys), (self.num_configs, 1)))
        values = {
            name: np.repeat(np.array([c[name] for c in self.configs], np.float32), self.num_seeds)
            for name in self.names
        }
        return np.arange(self.num_runs, dtype=np.int32), keys, values

    def label(self, config: int) -> str:
        """``name=value`` pairs of config ``config`` ("" without a sweep)."""
        return " ".join(f"{name}={value:g}" for name, value in self.configs[config].items())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refusal(field: dataclasses.Field, fixed: dict[str, str]) -> str | None:
    """Why ``field`` cannot be swept, or None if it can."""
    if field.name in fixed:
        return fixed[field.name]
    if field.type in (float, float | None):
        return None
    if field.type is int:
        return "an integer flag sets array sizes or loop lengths, which one compiled call fixes"
    if field.type is bool:
        return "a switch chooses which code is compiled"
    return "it chooses a model, an environment or a path, which one compiled call fixes"


def parse_sweep(config: Any) -> Sweep:
    """The ``Sweep`` of a script's config (a ``memorax.flags.RunFlags``): its ``--sweep`` specs
    (each ``NAME=v1,v2,...``; NAME as the flag, with - or _), ``--sweep-mode`` and
    ``num_seeds``. A ValueError in one line naming --sweep and the fix for a spec that does not
    parse, a flag that cannot be swept (the config class's ``fixed_in_sweep`` maps its float
    flags that do set shapes to the reason) or a value that the config itself refuses: every
    config is checked as the plain run with its values would be."""
    specs, mode, fixed = config.sweep, config.sweep_mode, type(config).fixed_in_sweep
    fields = {f.name: f for f in dataclasses.fields(config)}
    sweepable = [n for n, f in fields.items() if _refusal(f, fixed) is None]
    names, columns = [], []
    for spec in specs:
        name, _, text = spec.partition("=")
        name = name.strip().removeprefix("--").replace("-", "_")
        if not text.strip():
            raise ValueError(f"--sweep {spec!r}: write NAME=v1,v2,... e.g. learning-rate=1e-3,3e-3")
        if name not in fields or name == "sweep":
            raise ValueError(
                f"--sweep {spec!r}: {name!r} is not a flag of this script; sweepable: "
                + ", ".join(map(_flag, sweepable))
            )
        reason = _refusal(fields[name], fixed)
        if reason is not None:
            raise ValueError(
                f"--sweep: {_flag(name)} cannot vary within one compiled call ({reason}); run "
                "each value separately"
            )
        if name in names:
            raise ValueError(f"--sweep {_flag(name)} is given twice; list all its values once")
        try:
            values = [float(value) for value in text.split(",")]
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: values must be numbers, comma separated") from None
        names.append(name)
        columns.append(values)
    if mode == "zip" and len({len(values) for values in columns}) > 1:
        lengths = ", ".join(f"{_flag(n)} {len(v)}" for n, v in zip(names, columns, strict=True))
        raise ValueError(f"--sweep-mode zip needs as many values for every name ({lengths})")
    rows = zip(*columns, strict=True) if mode == "zip" else itertools.product(*columns)
    configs = tuple(dict(zip(names, row, strict=True)) for row in rows) if names else ({},)
    for values in configs if names else ():  # without a sweep the config checks itself
        try:
            dataclasses.replace(config, sweep=(), **values)
        except ValueError as error:
            label = " ".join(f"{_flag(n)} {v:g}" for n, v in values.items())
            raise ValueError(f"--sweep: the config with {label} is refused: {error}") from None
    return Sweep(tuple(names), configs, config.num_seeds)


def with_values(config: Any, values: dict[str, Any]) -> Any:
    """A copy of the frozen dataclass ``config`` with ``values`` (arrays, traced inside the
    compiled run) in place of its fields; ``config`` itself is unchanged. Its checks are not run
    again: ``parse_sweep`` has run them for every config."""
    if not values:
        return config
    config = copy.copy(config)
    for name, value in values.items():
        object.__setattr__(config, name, value)
    return config


def swept(
    agent_for: Callable[[dict[str, Any]], Any],
    start: Callable[..., Any],
    train: Callable[..., tuple[Any, Any]],
    progress: Any = None,
) -> tuple[Callable[..., Any], Callable[..., tuple[Any, Any]]]:
    """A script's one-seed ``start(agent, key)`` and ``train(agent, carry, first_period, n,
    progress=None)`` as one-run functions for ``memorax.experiment.train_seeds`` over
    ``Sweep.inputs``: each run builds its agent with ``agent_for(values)`` inside the compiled
    call and keeps its index and values in its carry; ``progress`` reports for the run
    (``Progress.for_run``)."""

    def start_run(inputs):
        index, key, values = inputs
        return index, values, start(agent_for(values), key)

    def train_run(carry, first_period, num_periods):
        index, values, inner = carry
        reporter = None if progress is None else progress.for_run(index)
        inner, outputs = train(agent_for(values), inner, first_period, num_periods, reporter)
        return (index, values, inner), outputs

    return start_run, train_run
