"""What the algorithms share about stepping environments: the Transition record and the inputs a
memory agent sees at each step."""

from collections.abc import Callable
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


def greedy_episode_returns(
    key: jax.Array,
    env: Any,
    env_params: Any,
    act: Callable[..., tuple[Any, jax.Array]],
    carry: Any,
    num_envs: int,
    num_steps: int,
    env_action: Callable[[jax.Array], jax.Array] = lambda action: action,
) -> tuple[jax.Array, jax.Array]:
    """Each of ``num_envs`` fresh envs' first-episode return under a deterministic policy.

    ``act(carry, observation, reset, prev_action, prev_reward) -> (carry, action)`` takes one-step
    sequences ([E, 1, ...]) and returns the action [E, ...] (the greedy action, the mode, the mean);
    ``carry`` is its initial carry for ``num_envs`` envs; ``env_action`` maps an action to what the
    env receives (clipping, say), the action itself being the next step's previous-action input.
    Runs ``num_steps`` steps; returns (episode_return [E], finished [E]); only finished episodes
    count (see ``mean_finished``).
    """
    reset_key, step_key = jax.random.split(key)
    observation, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_envs), env_params
    )
    zero = jnp.zeros((num_envs,))
    start = (
        env_state,
        observation,
        jnp.ones((num_envs,), bool),
        zero_action(env.action_space(env_params), num_envs),
        zero,
        carry,
        zero,
        jnp.zeros((num_envs,), bool),
    )

    def step(loop, key):
        env_state, observation, reset, prev_action, prev_reward, carry, total, finished = loop
        carry, action = act(
            carry, observation[:, None], reset[:, None], prev_action[:, None], prev_reward[:, None]
        )
        observation, env_state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key, num_envs), env_state, env_action(action), env_params)
        done = jnp.logical_or(terminated, truncated)
        total = total + jnp.where(finished, 0.0, reward)
        prev_action, prev_reward = next_step_inputs(done, action, reward)
        loop = (env_state, observation, done, prev_action, prev_reward, carry, total)
        return (*loop, finished | done), None

    end, _ = jax.lax.scan(step, start, jax.random.split(step_key, num_steps))
    return end[-2], end[-1]
