"""Observation wrappers that turn a fully observed gymnax env into a partially observed one.

A wrapper keeps the gymnax 1.0 API exactly: ``reset(key, params)``, ``step(key, state, action,
params) -> (obs, state, reward, terminated, truncated, info)``, ``observation_space(params)``
updated to what the wrapper emits, and everything else (``default_params``, ``action_space``,
``num_actions``, ...) forwarded to the wrapped env. Wrappers hold no state of their own, so the
env state passes through untouched and gymnax's auto-reset keeps working.

gymnax auto-resets inside ``step``: the returned ``obs`` is the first observation of the next
episode when the step ended one, and ``info["final_observation"]`` is the last observation of the
episode that ended. Both are transformed, with the same randomness when the episode goes on (then
they are the same observation) and fresh randomness for the new episode's first observation.
"""

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

FLOAT_MAX = float(jnp.finfo(jnp.float32).max)


class Wrapper:
    """Forwards every attribute it does not define to the wrapped env."""

    def __init__(self, env: Any):
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not yet set (copy, pickle): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._env, name)

    @property
    def unwrapped(self) -> environment.Environment:
        """The innermost gymnax env, whose ``step_env``/state the wrappers build on."""
        env = self._env
        return env.unwrapped if isinstance(env, Wrapper) else env


class ObservationWrapper(Wrapper):
    """Applies ``observation(key, obs)`` to every observation the env emits.

    ``uses_key`` says whether the transform is random; deterministic wrappers pass the caller's
    key to the env untouched, so a wrapped env steps exactly like the env it wraps.
    """

    uses_key: bool = False

    def observation(self, key: jax.Array, obs: jax.Array) -> jax.Array:
        raise NotImplementedError

    @partial(jax.jit, static_argnames=("self",))
    def reset(
        self, key: jax.Array, params: environment.EnvParams | None = None
    ) -> tuple[jax.Array, Any]:
        key, obs_key = jax.random.split(key) if self.uses_key else (key, key)
        obs, state = self._env.reset(key, params)
        return self.observation(obs_key, obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: Any,
        action: int | float | jax.Array,
        params: environment.EnvParams | None = None,
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        if self.uses_key:
            key, obs_key, reset_obs_key = jax.random.split(key, 3)
        else:
            obs_key = reset_obs_key = key
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        done = jnp.logical_or(terminated, truncated)
        obs = jnp.where(done, self.observation(reset_obs_key, obs), self.observation(obs_key, obs))
        if "final_observation" in info:
            info = {
                **info,
                "final_observation": self.observation(obs_key, info["final_observation"]),
            }
        return obs, state, reward, terminated, truncated, info


def _box_bounds(space: spaces.Box) -> tuple[jax.Array, jax.Array]:
    """Low and high of a Box as full arrays (gymnax allows scalar bounds)."""
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    return low, high


class SubsetObservation(ObservationWrapper):
    """Keeps only the given indices of a flat observation (e.g. CartPole positions: (0, 2))."""

    def __init__(self, env: Any, indices: tuple[int, ...]):
        super().__init__(env)
        obs_shape = env.observation_space(env.default_params).shape
        if len(obs_shape) != 1:
            raise ValueError(f"SubsetObservation needs flat observations, got shape {obs_shape}")
        if not indices or any(not 0 <= i < obs_shape[0] for i in indices):
            raise ValueError(f"indices {indices} must be non-empty and within [0, {obs_shape[0]})")
        self.indices = tuple(int(i) for i in indices)

    def observation(self, key: jax.Array, obs: jax.Array) -> jax.Array:
        return obs[jnp.array(self.indices)]

    def observation_space(self, params: environment.EnvParams) -> spaces.Box:
        space = self._env.observation_space(params)
        low, high = _box_bounds(space)
        index = jnp.array(self.indices)
        return spaces.Box(low[index], high[index], (len(self.indices),), space.dtype)


class FlickerObservation(ObservationWrapper):
    """Replaces the whole observation by zeros with probability ``probability`` at each step.

    The agent must carry what it saw across the blank steps, which makes even a fully observed
    task need memory (Hausknecht & Stone's "flickering" Atari).
    """

    uses_key = True

    def __init__(self, env: Any, probability: float):
        super().__init__(env)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"flicker probability ({probability}) must be in [0, 1]")
        self.probability = float(probability)

    def observation(self, key: jax.Array, obs: jax.Array) -> jax.Array:
        blank = jax.random.bernoulli(key, self.probability)
        return jnp.where(blank, jnp.zeros_like(obs), obs)

    def observation_space(self, params: environment.EnvParams) -> spaces.Box:
        space = self._env.observation_space(params)
        low, high = _box_bounds(space)
        # A blank observation is all zeros, so zero must lie inside the bounds.
        return spaces.Box(jnp.minimum(low, 0.0), jnp.maximum(high, 0.0), space.shape, space.dtype)


class GaussianNoiseObservation(ObservationWrapper):
    """Adds independent N(0, ``std``^2) noise to every observation component."""

    uses_key = True

    def __init__(self, env: Any, std: float):
        super().__init__(env)
        if std < 0.0:
            raise ValueError(f"noise std ({std}) must be >= 0")
        self.std = float(std)

    def observation(self, key: jax.Array, obs: jax.Array) -> jax.Array:
        noise = self.std * jax.random.normal(key, jnp.shape(obs), jnp.float32)
        return obs + noise.astype(obs.dtype)

    def observation_space(self, params: environment.EnvParams) -> spaces.Box:
        space = self._env.observation_space(params)
        # Gaussian noise is unbounded.
        return spaces.Box(-FLOAT_MAX, FLOAT_MAX, space.shape, space.dtype)
