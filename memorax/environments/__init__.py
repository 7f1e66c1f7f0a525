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
"""

from memorax.environments.autoencode import Autoencode
from memorax.environments.count_recall import CountRecall
from memorax.environments.episode_statistics import EpisodeStatistics, EpisodeStatisticsState
from memorax.environments.registry import (
    MEMORY_TASKS,
    NEEDS_DOWNLOAD,
    PARTIALLY_OBSERVED,
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
    "Autoencode",
    "CountRecall",
    "EpisodeStatistics",
    "EpisodeStatisticsState",
    "FlickerObservation",
    "GaussianNoiseObservation",
    "ObservationWrapper",
    "RepeatFirst",
    "RepeatPrevious",
    "SubsetObservation",
    "Wrapper",
    "check_env_id",
    "make",
    "registered_envs",
]
