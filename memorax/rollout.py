"""What the algorithms share about stepping environments: the Transition record and the inputs a
memory agent sees at each step."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces


@struct.dataclass
class Transition:
    """One step of experience per env: arrays with leading dims [..., num_envs]."""

    observation: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict[str, Any]


def zero_action(action_space: Any, num_envs: int) -> jax.Array:
    """The 'no previous action' input at an episode's first step, shaped like a batch of actions."""
    if isinstance(action_space, spaces.Discrete):
        return jnp.zeros((num_envs,), jnp.int32)
    return jnp.zeros((num_envs, *action_space.shape), jnp.float32)


def next_step_inputs(
    done: jax.Array, action: jax.Array, reward: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Previous action and reward for the next step; zero where a new episode starts, so the first
    step of an episode sees nothing of the one before it."""
    keep = jnp.logical_not(done)
    mask = keep.reshape(keep.shape + (1,) * (action.ndim - keep.ndim))
    return jnp.where(mask, action, jnp.zeros_like(action)), jnp.where(keep, reward, 0.0)


def evaluation_steps(env_params: Any, default: int = 1000) -> int:
    """Steps an evaluation runs: long enough for one whole episode of a time-limited env."""
    return int(getattr(env_params, "max_steps_in_episode", default))


def mean_finished(returns: jax.Array, finished: jax.Array) -> jax.Array:
    """Mean return of the episodes that finished; NaN where none did (never a false zero)."""
    return jnp.where(finished.any(), (returns * finished).sum() / finished.sum(), jnp.nan)
