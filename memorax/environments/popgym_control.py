"""POPGym's control tasks: CartPole and Pendulum seen through their positions only, optionally
noisy, with POPGym's episode lengths and reward scale (returns in [-1, 1]).

- ``PositionOnlyCartPole``: observation [cart position, pole angle] (no velocities), episodes
  truncated at 200 / 400 / 600 steps (Easy / Medium / Hard), reward 1 / length per step, so a
  whole episode returns 1. POPGym maps a step's CartPole reward of 0 to -1, but neither
  gymnasium 1.x (POPGym's base) nor gymnax pays 0 on any step, so the -1 never occurs; it is
  kept so the mapping stays POPGym's.
- ``PositionOnlyPendulum``: observation [cos angle, sin angle] (no angular velocity), episodes of
  200 / 150 / 100 steps, Pendulum's reward in [-16.27, 0] mapped linearly to [-1, 1] and divided
  by the length.
- The ``Noisy`` variants add N(0, sigma^2) to every observation component, sigma 0.1 / 0.2 / 0.3,
  then clip to the observation space (POPGym's order), on the first observation too. As in
  POPGym, their episodes keep the Easy length (200 steps) at every difficulty: only the noise
  grows.

Dynamics, initial states and termination are gymnax's CartPole-v1 and Pendulum-v1, which follow
gymnasium's (checked against popgym step for step in tests/test_popgym_reference.py). Ours differ
from memorax's CartPole-P-v1 and Pendulum-P-v1 (gymnax's lengths and rewards: 500 steps paying
1 each; 200 steps of the raw cost), which stay as they are for the learning tables.
"""

from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import spaces
from gymnax.environments.classic_control.cartpole import CartPole
from gymnax.environments.classic_control.pendulum import Pendulum

PENDULUM_WORST = -16.2736044  # POPGym's lowest Pendulum reward: -(pi^2 + 0.1 * 8^2 + 0.001 * 2^2)

CARTPOLE_LENGTHS = {"Easy": 200, "Medium": 400, "Hard": 600}
PENDULUM_LENGTHS = {"Easy": 200, "Medium": 150, "Hard": 100}
NOISE = {"Easy": 0.1, "Medium": 0.2, "Hard": 0.3}


def _noisy(key: jax.Array, obs: jax.Array, sigma: float, low, high) -> jax.Array:
    if sigma == 0.0:
        return obs
    noise = sigma * jax.random.normal(key, obs.shape, jnp.float32)
    return jnp.clip(obs + noise, low, high)


class _POPGymControl:
    """POPGym's episode length and observation noise over a gymnax control env (a mixin before
    it), which sees two observation components."""

    def __init__(self, max_episode_length: int = 200, noise_sigma: float = 0.0):
        super().__init__()
        self.max_episode_length = max_episode_length
        self.noise_sigma = noise_sigma
        self.obs_shape = (2,)

    @property
    def default_params(self):
        return super().default_params.replace(max_steps_in_episode=self.max_episode_length)


class PositionOnlyCartPole(_POPGymControl, CartPole):
    def _bounds(self, params) -> tuple[jax.Array, jax.Array]:
        high = jnp.array([2 * params.x_threshold, 2 * params.theta_threshold_radians], jnp.float32)
        return -high, high

    def _observe(self, key: jax.Array, full: jax.Array, params) -> jax.Array:
        obs = full[jnp.array([0, 2])].astype(jnp.float32)
        return _noisy(key, obs, self.noise_sigma, *self._bounds(params))

    def reset_env(self, key: jax.Array, params) -> tuple[jax.Array, Any]:
        state_key, noise_key = jax.random.split(key)
        full, state = super().reset_env(state_key, params)
        return self._observe(noise_key, full, params), state

    def step_env(self, key: jax.Array, state, action, params):
        full, state, reward, terminated, info = super().step_env(key, state, action, params)
        reward = jnp.where(reward == 0, -1.0, 1.0 / self.max_episode_length)
        return self._observe(key, full, params), state, reward, terminated, info

    def observation_space(self, params) -> spaces.Box:
        low, high = self._bounds(params)
        return spaces.Box(low, high, (2,), jnp.float32)

    @property
    def name(self) -> str:
        return "PositionOnlyCartPole"


class PositionOnlyPendulum(_POPGymControl, Pendulum):
    def _observe(self, key: jax.Array, full: jax.Array) -> jax.Array:
        return _noisy(key, full[:2].astype(jnp.float32), self.noise_sigma, -1.0, 1.0)

    def reset_env(self, key: jax.Array, params) -> tuple[jax.Array, Any]:
        state_key, noise_key = jax.random.split(key)
        full, state = super().reset_env(state_key, params)
        return self._observe(noise_key, full), state

    def step_env(self, key: jax.Array, state, action, params):
        full, state, reward, terminated, info = super().step_env(key, state, action, params)
        half = -PENDULUM_WORST / 2
        reward = (reward + half) / half / self.max_episode_length
        return self._observe(key, full), state, reward, terminated, info

    def observation_space(self, params) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    @property
    def name(self) -> str:
        return "PositionOnlyPendulum"


def _task(cls, lengths, level: str, noisy: bool):
    def build(**kwargs: Any):
        length = lengths["Easy" if noisy else level]  # POPGym: noise alone sets the difficulty
        settings = {"max_episode_length": length, "noise_sigma": NOISE[level] * noisy}
        return cls(**{**settings, **kwargs})

    return build


TASKS = {
    f"{prefix}{name}{level}": _task(cls, lengths, level, noisy)
    for name, cls, lengths in (
        ("PositionOnlyCartPole", PositionOnlyCartPole, CARTPOLE_LENGTHS),
        ("PositionOnlyPendulum", PositionOnlyPendulum, PENDULUM_LENGTHS),
    )
    for prefix, noisy in (("", False), ("Noisy", True))
    for level in ("Easy", "Medium", "Hard")
}
"""POPGym's ids (e.g. ``NoisyPositionOnlyPendulumHard``): a constructor each, for ``make``."""
