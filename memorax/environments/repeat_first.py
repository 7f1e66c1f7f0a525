"""RepeatFirst (POPGym): keep naming the suit of the first card of the episode.

Cards of ``num_decks`` shuffled decks are shown one per step as a one-hot suit [4]. At every step
the action (a suit, Discrete(4)) is scored against the first card: +-1 / (num_cards - 1), so an
episode's return lies in [-1, 1]. The episode ends (terminated) after num_cards - 1 steps, when
the last card has been shown. The memory needed is one suit, held for the whole episode.

Settings as in POPGym: Easy 1 deck, Medium 8 decks, Hard 16 decks.
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from memorax.environments.cards import (
    CARDS_PER_DECK,
    CardGame,
    check_num_decks,
    deal,
    full_deck,
    one_hot,
    signed_reward,
)

NUM_SUITS = 4


@struct.dataclass
class RepeatFirstState(environment.EnvState):
    first: jax.Array  # int32: suit of the first card, the answer at every step
    card: jax.Array  # int32: suit of the card shown now
    undealt: jax.Array  # [4] int32: cards of each suit still in the deck
    time: int


class RepeatFirst(CardGame):
    def __init__(self, num_decks: int = 1):
        check_num_decks(num_decks)
        self.num_decks = num_decks
        self.num_cards = CARDS_PER_DECK * num_decks
        self.episode_length = self.num_cards - 1
        self.obs_size = NUM_SUITS
        self.reward_scale = 1.0 / self.episode_length

    @property
    def num_actions(self) -> int:
        return NUM_SUITS

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, RepeatFirstState]:
        card, undealt = deal(key, full_deck(self.num_decks))
        state = RepeatFirstState(first=card, card=card, undealt=undealt, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: RepeatFirstState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, RepeatFirstState, jax.Array, jax.Array, dict]:
        reward = signed_reward(action == state.first, self.reward_scale)
        card, undealt = deal(key, state.undealt)
        state = state.replace(card=card, undealt=undealt, time=state.time + 1)
        terminated = self.is_terminated(state, params)
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state: RepeatFirstState, params=None, key=None) -> jax.Array:
        return one_hot(state.card, NUM_SUITS)


DIFFICULTIES = {"Easy": dict(num_decks=1), "Medium": dict(num_decks=8), "Hard": dict(num_decks=16)}
"""POPGym's settings: make("RepeatFirstHard") builds RepeatFirst(**DIFFICULTIES["Hard"])."""
