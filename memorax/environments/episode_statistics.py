"""Per-env episode return and length, reported only for episodes that actually ended.

``EpisodeStatistics(env)`` adds to each step's ``info``:

- ``returned_episode`` (bool): an episode ended at this step (``terminated or truncated``).
- ``returned_episode_returns`` (float32): the undiscounted return of the episode that just ended.
- ``returned_episode_lengths`` (int32): the number of steps of the episode that just ended.
- ``terminated`` / ``truncated`` (bool): kept apart, as the env reported them.

The two ``returned_episode_*`` values are meaningful only where ``returned_episode`` is True (they
are 0 elsewhere); average them with that mask, e.g.
``(returns * mask).sum() / mask.sum()``. Nothing is reported before the first episode ends, unlike
wrappers that report the "last finished" return and so show 0 until then.

The env's own auto-reset (gymnax 1.0 ``step``) restarts the episode; this wrapper restarts its
counters on the same step, so the first step of the next episode starts from 0.
"""

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from memorax.environments.wrappers import Wrapper


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: jax.Array  # float32: return so far of the episode in progress
    episode_length: jax.Array  # int32: steps so far of the episode in progress


class EpisodeStatistics(Wrapper):
    """Counts each env's episode return and length; see the module docstring for ``info``."""

    @partial(jax.jit, static_argnames=("self",))
    def reset(
        self, key: jax.Array, params: environment.EnvParams | None = None
    ) -> tuple[jax.Array, EpisodeStatisticsState]:
        obs, env_state = self._env.reset(key, params)
        state = EpisodeStatisticsState(
            env_state=env_state,
            episode_return=jnp.float32(0.0),
            episode_length=jnp.int32(0),
        )
        return obs, state

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: EpisodeStatisticsState,
        action: int | float | jax.Array,
        params: environment.EnvParams | None = None,
    ) -> tuple[Any, EpisodeStatisticsState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.asarray(truncated, jnp.bool_)
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + jnp.asarray(reward, jnp.float32).reshape(())
        episode_length = state.episode_length + 1
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "returned_episode": done,
            "returned_episode_returns": jnp.where(done, episode_return, 0.0),
            "returned_episode_lengths": jnp.where(done, episode_length, 0),
        }
        state = EpisodeStatisticsState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
        )
        return obs, state, reward, terminated, truncated, info
