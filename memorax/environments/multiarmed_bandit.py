"""MultiarmedBandit (POPGym): find the arm that pays most often within one episode, then play it.

At reset every arm draws its payout probability uniformly from [0, 1). The action pulls one arm
(Discrete(num_bandits)); it pays out with that arm's probability, scoring +1 / episode_length, and
otherwise scores -1 / episode_length, so an episode's return lies in [-1, 1]. The observation is
whether the last pull paid out: POPGym's Discrete(2) (0 at reset), one-hot: [2]. The episode runs
for episode_length steps and is then truncated, as in POPGym: nothing terminates it.

The observation does not say which arm was pulled: POPGym marks the task as needing the previous
action in the input, so train with ``--use-prev-action``. The memory needed is each arm's record.

Settings as in POPGym: Easy 10 arms for 200 steps, Medium 20 for 400, Hard 30 for 600.
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from memorax.environments.cards import CardGame, one_hot, signed_reward


@struct.dataclass
class MultiarmedBanditState(environment.EnvState):
    arms: jax.Array  # [num_bandits] float32: each arm's probability of paying out
    paid: jax.Array  # int32: 1 when the last pull paid out, else 0 (and 0 at reset)
    time: int


class MultiarmedBandit(CardGame):
    """Not a card game, but it shares CardGame's plumbing: name, default params and spaces."""

    def __init__(self, num_bandits: int = 10, episode_length: int = 200):
        if not isinstance(num_bandits, int) or num_bandits < 1:
            raise ValueError(f"num_bandits ({num_bandits!r}) must be a positive integer")
        if not isinstance(episode_length, int) or episode_length < 1:
            raise ValueError(f"episode_length ({episode_length!r}) must be a positive integer")
        self.num_bandits = num_bandits
        self.episode_length = episode_length
        self.obs_size = 2
        self.reward_scale = 1.0 / episode_length

    @property
    def num_actions(self) -> int:
        return self.num_bandits

    def is_terminated(
        self, state: MultiarmedBanditState, params: environment.EnvParams
    ) -> jax.Array:
        return jnp.asarray(False)

    def is_truncated(
        self, state: MultiarmedBanditState, params: environment.EnvParams
    ) -> jax.Array:
        # POPGym's horizon is a time limit; a shorter max_steps_in_episode truncates earlier.
        limit = jnp.minimum(params.max_steps_in_episode, self.episode_length)
        return jnp.asarray(state.time >= limit)

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, MultiarmedBanditState]:
        arms = jax.random.uniform(key, (self.num_bandits,), jnp.float32)
        state = MultiarmedBanditState(arms=arms, paid=jnp.int32(0), time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: MultiarmedBanditState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, MultiarmedBanditState, jax.Array, jax.Array, dict]:
        paid = jax.random.uniform(key, (), jnp.float32) < state.arms[action]
        reward = signed_reward(paid, self.reward_scale)
        state = state.replace(paid=paid.astype(jnp.int32), time=state.time + 1)
        return self.get_obs(state), state, reward, self.is_terminated(state, params), {}

    def get_obs(self, state: MultiarmedBanditState, params=None, key=None) -> jax.Array:
        return one_hot(state.paid, 2)


DIFFICULTIES = {
    "Easy": dict(num_bandits=10, episode_length=200),
    "Medium": dict(num_bandits=20, episode_length=400),
    "Hard": dict(num_bandits=30, episode_length=600),
}
"""POPGym's settings: make("MultiarmedBanditHard") is MultiarmedBandit(**DIFFICULTIES["Hard"])."""
