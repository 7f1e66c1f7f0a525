"""What the algorithms share about stepping environments: the memory agent's step input, the
Transition record ``train`` returns, episode statistics and greedy evaluation given an ``act``
function."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces


@struct.dataclass
class StepInput:
    """What a memory agent sees at a step besides its carry. Leaves share their leading dims: [E]
    for one step of E envs, [E, T] (or time-major [T, E]) for sequences."""

    observation: jax.Array
    reset: jax.Array  # True where the step is the first of an episode
    prev_action: jax.Array  # the action before this step; zero at an episode's first step
    prev_reward: jax.Array  # the reward before this step; zero at an episode's first step

    @classmethod
    def first(cls, observation: jax.Array, action_space: Any) -> "StepInput":
        """The first step of fresh episodes, for a batch of observations [E, ...]."""
        num_envs = observation.shape[0]
        if isinstance(action_space, spaces.Discrete):
            no_action = jnp.zeros((num_envs,), jnp.int32)
        else:
            no_action = jnp.zeros((num_envs, *action_space.shape), jnp.float32)
        return cls(
            observation=observation,
            reset=jnp.ones((num_envs,), bool),
            prev_action=no_action,
            prev_reward=jnp.zeros((num_envs,)),
        )

    @classmethod
    def after(
        cls, observation: jax.Array, done: jax.Array, action: jax.Array, reward: jax.Array
    ) -> "StepInput":
        """The step after a transition that took ``action``, got ``reward`` and ended where
        ``done``: there the next step starts an episode and sees no action or reward of the one
        before it."""
        keep = jnp.logical_not(done)
        mask = keep.reshape(keep.shape + (1,) * (action.ndim - keep.ndim))
        return cls(
            observation=observation,
            reset=done,
            prev_action=jnp.where(mask, action, jnp.zeros_like(action)),
            prev_reward=jnp.where(keep, reward, 0.0),
        )

    def as_sequence(self) -> "StepInput":
        """One step [E, ...] as one-step sequences [E, 1, ...], as a torso takes it."""
        return jax.tree.map(lambda x: x[:, None], self)

    def network_args(self, carry: Any) -> tuple:
        """The positional arguments of a ``Network`` call:
        (observation, reset, carry, prev_action, prev_reward)."""
        return self.observation, self.reset, carry, self.prev_action, self.prev_reward


@struct.dataclass
class Transition:
    """What a script's ``train`` returns: the experience of its last round (leaves
    [steps, num_envs, ...]) and the training metrics of every round (leaves [rounds])."""

    observation: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict[str, Any]
    metrics: dict[str, jax.Array]


def evaluation_steps(env_params: Any) -> int:
    """Steps an evaluation runs: one whole episode of a time-limited env, its params'
    ``max_steps_in_episode``. A ValueError for params without one: no length is guessed (a
    guess too short reports no finished episode, or only the short ones)."""
    steps = getattr(env_params, "max_steps_in_episode", None)
    if steps is None:
        raise ValueError(
            f"the env's params ({type(env_params).__name__}) have no max_steps_in_episode, so "
            "evaluation cannot know how long an episode runs: give them that field (gymnax's "
            "EnvParams has it) set to the env's episode limit"
        )
    return int(steps)


def mean_finished(returns: jax.Array, finished: jax.Array) -> jax.Array:
    """Mean return of the episodes that finished; NaN where none did (never a false zero)."""
    return jnp.where(finished.any(), (returns * finished).sum() / finished.sum(), jnp.nan)


def episode_metrics(info: dict[str, Any]) -> dict[str, jax.Array]:
    """Episodes that ended in ``info`` (from ``EpisodeStatistics``) and their mean return."""
    ended = info["returned_episode"]
    return {
        "episodes": ended.sum(),
        "episode_return": mean_finished(info["returned_episode_returns"], ended),
    }


def greedy_episode_returns(
    key: jax.Array,
    env: Any,
    env_params: Any,
    act: Callable[[Any, StepInput], tuple[Any, jax.Array]],
    carry: Any,
    num_envs: int,
    num_steps: int,
    env_action: Callable[[jax.Array], jax.Array] = lambda action: action,
) -> tuple[jax.Array, jax.Array]:
    """Each of ``num_envs`` fresh envs' first-episode return under a deterministic policy.

    ``act(carry, inputs) -> (carry, action)`` takes one-step sequences (``StepInput`` [E, 1, ...])
    and returns the action [E, ...] (the greedy action, the mode, the mean); ``carry`` is its
    initial carry for ``num_envs`` envs; ``env_action`` maps an action to what the env receives
    (clipping, say), and what the env received is the next step's previous-action input, as in
    training. Runs ``num_steps`` steps; returns (episode_return [E], finished [E]); only finished
    episodes count (see ``mean_finished``).
    """
    reset_key, step_key = jax.random.split(key)
    observation, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_envs), env_params
    )
    inputs = StepInput.first(observation, env.action_space(env_params))
    total, finished = jnp.zeros((num_envs,)), jnp.zeros((num_envs,), bool)

    def step(loop, key):
        env_state, inputs, carry, total, finished = loop
        carry, action = act(carry, inputs.as_sequence())
        executed = env_action(action)
        observation, env_state, reward, terminated, truncated, _ = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key, num_envs), env_state, executed, env_params)
        done = jnp.logical_or(terminated, truncated)
        total = total + jnp.where(finished, 0.0, reward)
        inputs = StepInput.after(observation, done, executed, reward)
        return (env_state, inputs, carry, total, finished | done), None

    start = (env_state, inputs, carry, total, finished)
    (_, _, _, total, finished), _ = jax.lax.scan(step, start, jax.random.split(step_key, num_steps))
    return total, finished
