"""Checks of command-line values that every script's config makes alike, given the values (a
dict of flag names to values), so a bad value is refused by name before anything compiles."""

import math
from typing import Any


def check_finite(values: dict[str, Any]) -> None:
    """A ValueError naming the flag of the first float in ``values`` (field names, as
    ``dataclasses.asdict`` gives them) that is NaN or infinite: such a value trains nothing
    and would pass every range check written as a comparison."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name.replace('_', '-')} ({value}) must be a finite number")
