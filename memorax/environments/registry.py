"""``make(env_id, **kwargs)``: every gymnax id plus memorax's partially observable and memory tasks.

Gymnax ids that download data when built (``NEEDS_DOWNLOAD``) are refused with a one-line reason.

How ``kwargs`` are used: a keyword that names a field of the env's params (``EnvParams``, e.g.
``max_steps_in_episode=200``) replaces that field in the returned params; every other keyword goes
to the env's constructor (e.g. ``make("RepeatPreviousEasy", k=8)``,
``make("MemoryChain-bsuite", num_bits=3)``). Constructor arguments fix array shapes, so they are
static; params are arrays and may be changed later with ``params.replace(...)``.

``make`` returns the bare env; wrap it yourself (``EpisodeStatistics(env)``) so that no wrapper is
ever applied twice and the env stays interchangeable with ``gymnax.make``'s.
"""

import difflib
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnax
from gymnax.environments import environment

from memorax.environments import (
    autoencode,
    battleship,
    concentration,
    count_recall,
    higher_lower,
    labyrinth,
    minesweeper,
    multiarmed_bandit,
    popgym_control,
    repeat_first,
    repeat_previous,
)
from memorax.environments.cards import CardGame
from memorax.environments.wrappers import SubsetObservation


def _gymnax(env_id: str, **kwargs: Any) -> environment.Environment:
    env, _ = gymnax.make(env_id, **kwargs)
    return env


def _card_task(task: type[CardGame], env_id: str, **kwargs: Any) -> CardGame:
    """``task(**kwargs)``, named ``env_id``."""
    env = task(**kwargs)
    env.env_id = env_id
    return env


def _by_difficulty(tasks: tuple[tuple[type[CardGame], dict], ...]) -> dict[str, Callable[..., Any]]:
    """``<Task><Level>`` for each task and each of its difficulties: the factory ``make`` calls."""
    return {
        task.__name__ + level: partial(_card_task, task, task.__name__ + level, **settings)
        for task, difficulties in tasks
        for level, settings in difficulties.items()
    }


def _observe(env_id: str, indices: tuple[int, ...], **kwargs: Any) -> SubsetObservation:
    return SubsetObservation(_gymnax(env_id, **kwargs), indices)


# Velocity-only CartPole is nearly solvable without memory (the pole's angular velocity alone
# says which way to push), so never use it as evidence that an agent remembers anything.
PARTIALLY_OBSERVED: dict[str, Callable[..., Any]] = {
    "CartPole-P-v1": partial(_observe, "CartPole-v1", (0, 2)),  # cart position, pole angle
    "CartPole-V-v1": partial(_observe, "CartPole-v1", (1, 3)),  # cart and pole velocities
    "Pendulum-P-v1": partial(_observe, "Pendulum-v1", (0, 1)),  # cos and sin of the angle
    "Pendulum-V-v1": partial(_observe, "Pendulum-v1", (2,)),  # angular velocity
}

# POPGym's difficulties: "RepeatFirstEasy" is RepeatFirst(**repeat_first.DIFFICULTIES["Easy"]).
# Keywords given to make() override these defaults (partial's keywords give way to the call's).
_CARD_TASKS = (
    (repeat_first.RepeatFirst, repeat_first.DIFFICULTIES),
    (repeat_previous.RepeatPrevious, repeat_previous.DIFFICULTIES),
    (count_recall.CountRecall, count_recall.DIFFICULTIES),
    (autoencode.Autoencode, autoencode.DIFFICULTIES),
)

MEMORY_TASKS: dict[str, Callable[..., Any]] = {
    **_by_difficulty(_CARD_TASKS),
    "MemoryChain-bsuite": partial(_gymnax, "MemoryChain-bsuite"),
}

# POPGym's games and its bandit, named and configured like the tasks above ("HigherLowerEasy").
POPGYM_GAMES: dict[str, Callable[..., Any]] = _by_difficulty(
    (
        (higher_lower.HigherLower, higher_lower.DIFFICULTIES),
        (multiarmed_bandit.MultiarmedBandit, multiarmed_bandit.DIFFICULTIES),
        (concentration.Concentration, concentration.DIFFICULTIES),
        (battleship.Battleship, battleship.DIFFICULTIES),
        (minesweeper.MineSweeper, minesweeper.DIFFICULTIES),
        (labyrinth.LabyrinthEscape, labyrinth.DIFFICULTIES),
        (labyrinth.LabyrinthExplore, labyrinth.DIFFICULTIES),
    )
)

# gymnax ids whose env downloads a data set when it is made (id: the data set): memorax runs
# offline, so make() refuses them by name before any network access, and registered_envs()
# does not list them.
NEEDS_DOWNLOAD: dict[str, str] = {"MNISTBandit-bsuite": "MNIST"}

# POPGym's position-only CartPole and Pendulum and their noisy variants, POPGym's lengths and
# reward scale ("PositionOnlyCartPoleEasy"; memorax's CartPole-P-v1 keeps gymnax's).
POPGYM_CONTROL: dict[str, Callable[..., Any]] = dict(popgym_control.TASKS)
# The POPGym paper's names for those tasks (popgym's package names them PositionOnly...):
# "StatelessCartPoleEasy" builds PositionOnlyCartPoleEasy. Benchmarks list each task once.
POPGYM_ALIASES: dict[str, str] = {
    f"{noise}Stateless{system}{level}": f"{noise}PositionOnly{system}{level}"
    for noise in ("", "Noisy")
    for system in ("CartPole", "Pendulum")
    for level in ("Easy", "Medium", "Hard")
}

_REGISTRY: dict[str, Callable[..., Any]] = {
    **{
        env_id: partial(_gymnax, env_id)
        for env_id in gymnax.registered_envs
        if env_id not in NEEDS_DOWNLOAD
    },
    **PARTIALLY_OBSERVED,
    **MEMORY_TASKS,
    **POPGYM_GAMES,
    **POPGYM_CONTROL,
    **{alias: POPGYM_CONTROL[task] for alias, task in POPGYM_ALIASES.items()},
}


def registered_envs() -> tuple[str, ...]:
    """Every id ``make`` accepts: gymnax's, then the partially observed, memory and game tasks."""
    return tuple(_REGISTRY)


def check_env_id(env_id: str, name: str = "env id") -> None:
    """The ValueError ``make(env_id)`` would raise for an id it does not build, without building
    anything; ``name`` is how the message names the id (a config passes its flag, "--env-id")."""
    if env_id in NEEDS_DOWNLOAD:
        raise ValueError(
            f"{name} {env_id!r} is not supported: gymnax downloads {NEEDS_DOWNLOAD[env_id]} when "
            "it is made, and memorax runs offline"
        )
    if env_id in _REGISTRY:
        return
    for level in ("Easy", "Medium", "Hard"):  # a POPGym family with a difficulty it lacks
        family = [i[: -len(level)] for i in _REGISTRY if i.endswith(level)]
        for task in family:
            if env_id.startswith(task) and env_id[len(task) :].isalpha():
                raise ValueError(
                    f"{name} {env_id!r}: {task} has no difficulty {env_id[len(task) :]!r}; "
                    f"choose {task}Easy, {task}Medium or {task}Hard"
                )
    close = difflib.get_close_matches(env_id, _REGISTRY, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(
        f"{name} {env_id!r} is unknown{hint}; valid ids: {', '.join(registered_envs())}"
    )


def make(env_id: str, **kwargs: Any) -> tuple[Any, environment.EnvParams]:
    """Builds ``env_id`` and its default params, configured by ``kwargs`` (module docstring)."""
    check_env_id(env_id)
    factory = _REGISTRY[env_id]
    env = factory()
    param_fields = set(env.default_params.__dataclass_fields__)
    param_kwargs = {name: value for name, value in kwargs.items() if name in param_fields}
    env_kwargs = {name: value for name, value in kwargs.items() if name not in param_fields}
    if env_kwargs:
        try:
            env = factory(**env_kwargs)
        except TypeError as error:
            raise ValueError(
                f"{env_id} does not accept {sorted(env_kwargs)}: a keyword must be a field of its "
                f"params ({sorted(param_fields)}) or a constructor argument ({error})"
            ) from error
    return env, env.default_params.replace(**param_kwargs)
