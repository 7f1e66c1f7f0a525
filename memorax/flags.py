"""Checks of command-line values that every script's config makes alike, given the values (a
dict of flag names to values), so a bad value is refused by name before anything compiles; and
the run flags that every script's config shares (``RunFlags``)."""

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import tyro


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


@dataclass(frozen=True)
class RunFlags:
    """The flags every script shares that say where a run goes and how it is run, not what it
    learns: a script's config subclasses this (its own fields follow these in ``--help``) and
    names in ``fixed_in_sweep`` its float flags that --sweep must refuse, with the reason."""

    fixed_in_sweep: ClassVar[dict[str, str]] = {}

    output_dir: str = "runs"
    """Folder for results: config, curves, summary, plot and checkpoint of each run."""
    checkpoint_every: int = 0
    """Env steps per seed between saves of the whole training state (0: off; training is one
    compiled call): a multiple of --eval-every that divides the training steps. Needed for
    --resume."""
    load: str | None = None
    """A run folder to load (its config and checkpoint) and evaluate again instead of training."""
    resume: str | None = None
    """A run folder to go on training from its last checkpoint, with its own config."""
    sweep: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """NAME=v1,v2,...: train every value of a float flag in the same compiled call, each config
    --num-seeds seeds, e.g. --sweep learning-rate=3e-4,1e-3 --sweep gamma=0.9,0.99"""
    sweep_mode: Literal["grid", "zip"] = "grid"
    """Configs of several --sweep flags: every combination (grid) or values side by side (zip)."""
    track: Literal["tensorboard", "wandb"] | None = None
    """Log metrics live, one tracker run per config and seed: TensorBoard files in the run
    folder, or Weights & Biases (WANDB_MODE=offline logs without network)."""
    wandb_project: str = "memorax"
    """W&B project for --track wandb."""
    wandb_entity: str | None = None
    """W&B entity (user or team) for --track wandb."""

    def check_run_flags(self, eval_every: int, training_steps: int) -> None:
        """A ValueError naming the flag: --checkpoint-every against the script's evaluation
        period and training steps, every --sweep config (``memorax.sweep``), and --track's
        package (``memorax.tracking``)."""
        from memorax.sweep import parse_sweep
        from memorax.tracking import check_tracker

        check_checkpoint_every(self.checkpoint_every, eval_every, training_steps)
        parse_sweep(self)
        check_tracker(self.track)
