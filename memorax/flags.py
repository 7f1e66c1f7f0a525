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


def check_checkpoint_every(checkpoint_every: int, eval_every: int, training_steps: int) -> None:
    """--checkpoint-every is 0 (off) or whole evaluation periods that divide the training: a
    checkpoint is taken between the compiled segments, each a run of whole periods."""
    if checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every ({checkpoint_every}) must be 0 (off) or positive")
    if checkpoint_every and (checkpoint_every % eval_every or training_steps % checkpoint_every):
        raise ValueError(
            f"--checkpoint-every ({checkpoint_every}) must be 0 (off) or a multiple of "
            f"--eval-every ({eval_every}) that divides the {training_steps} training env steps"
        )


def check_counts(values: dict[str, Any], zero_ok: tuple[str, ...] = ()) -> None:
    """A ValueError naming the first integer flag in ``values`` below 1 (below 0 for the names in
    ``zero_ok``); --seed may be any integer and --checkpoint-every has its own check."""
    for name, value in values.items():
        if type(value) is not int or name in ("seed", "checkpoint_every"):
            continue
        least = 0 if name in zero_ok else 1
        if value < least:
            raise ValueError(f"--{name.replace('_', '-')} ({value}) must be at least {least}")


def check_whole_rounds(num_steps: int, steps_per_round: int, round_flags: str) -> None:
    """A ValueError unless ``num_steps`` (given to a script's ``train``) is whole rounds of
    ``steps_per_round`` env steps; ``round_flags`` names the flags that set a round's size."""
    if num_steps % steps_per_round:
        raise ValueError(
            f"train(num_steps={num_steps}) must be a multiple of {round_flags} = {steps_per_round}"
        )
