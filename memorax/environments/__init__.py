"""Environments with the gymnax 1.0 API: every gymnax id, partially observed classic control and
POPGym's memory tasks, all built by ``make(env_id, **kwargs) -> (env, params)``.

Typical use (``make`` returns the bare env; wrap it with ``EpisodeStatistics`` yourself)::

    env, params = make("CartPole-P-v1")
    env = EpisodeStatistics(env)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)
    obs, state, reward, terminated, truncated, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None)
    )(step_keys, state, action, params)
    # info["returned_episode"] marks the entries whose returned_episode_returns/_lengths are valid

``registered_envs()`` lists every id but gymnax's that download data when made (``NEEDS_DOWNLOAD``,
e.g. ``MNISTBandit-bsuite``), which ``make`` refuses by name. Ours:

- ``CartPole-P-v1`` (cart position, pole angle), ``CartPole-V-v1`` (velocities),
  ``Pendulum-P-v1`` (cos, sin of the angle), ``Pendulum-V-v1`` (angular velocity). Velocity-only
  CartPole is nearly solvable without memory: never use it as proof of memory.
- ``RepeatFirst``, ``RepeatPrevious``, ``CountRecall``, ``Autoencode`` with suffix ``Easy``,
  ``Medium`` or ``Hard`` (POPGym, Morad et al. 2023), and gymnax's ``MemoryChain-bsuite``.
- POPGym's ``HigherLower``, ``MultiarmedBandit``, ``Concentration``, ``Battleship`` and
  ``MineSweeper``, with the same suffixes (``POPGYM_GAMES``). All but HigherLower do not show the
  action taken: train them with ``--use-prev-action``.
- POPGym's ``LabyrinthEscape`` and ``LabyrinthExplore``, with the same suffixes (``POPGYM_GAMES``).
  They show the last action; POPGym warns that a memoryless MLP solves them better than an LSTM.
- POPGym's ``PositionOnlyCartPole``, ``PositionOnlyPendulum``, ``NoisyPositionOnlyCartPole`` and
  ``NoisyPositionOnlyPendulum``, with the same suffixes (``POPGYM_CONTROL``): POPGym's episode
  lengths, noise and reward scale, unlike ``CartPole-P-v1`` and ``Pendulum-P-v1``. The POPGym
  paper's names for them (``StatelessCartPoleEasy``, ``NoisyStatelessPendulumHard``, ...) are
  aliases (``POPGYM_ALIASES``).
"""

from memorax.environments.autoencode import Autoencode
from memorax.environments.battleship import Battleship
from memorax.environments.concentration import Concentration
from memorax.environments.count_recall import CountRecall
from memorax.environments.episode_statistics import EpisodeStatistics, EpisodeStatisticsState
from memorax.environments.higher_lower import HigherLower
from memorax.environments.labyrinth import LabyrinthEscape, LabyrinthExplore
from memorax.environments.minesweeper import MineSweeper
from memorax.environments.multiarmed_bandit import MultiarmedBandit
from memorax.environments.registry import (
    MEMORY_TASKS,
    NEEDS_DOWNLOAD,
    PARTIALLY_OBSERVED,
    POPGYM_CONTROL,
    POPGYM_GAMES,
    check_env_id,
    make,
    registered_envs,
)
from memorax.environments.repeat_first import RepeatFirst
from memorax.environments.repeat_previous import RepeatPrevious
from memorax.environments.wrappers import (
    FlickerObservation,
    GaussianNoiseObservation,
    ObservationWrapper,
    SubsetObservation,
    Wrapper,
)

__all__ = [
    "MEMORY_TASKS",
    "NEEDS_DOWNLOAD",
    "PARTIALLY_OBSERVED",
    "POPGYM_CONTROL",
    "POPGYM_GAMES",
    "Autoencode",
    "Battleship",
    "Concentration",
    "CountRecall",
    "EpisodeStatistics",
    "EpisodeStatisticsState",
    "FlickerObservation",
    "GaussianNoiseObservation",
    "HigherLower",
    "LabyrinthEscape",
    "LabyrinthExplore",
    "MineSweeper",
    "MultiarmedBandit",
    "ObservationWrapper",
    "RepeatFirst",
    "RepeatPrevious",
    "SubsetObservation",
    "Wrapper",
    "check_env_id",
    "make",
    "registered_envs",
]
