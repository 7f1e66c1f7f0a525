"""RepeatPrevious (POPGym): name the suit of the card seen k - 1 steps before the current one.

Cards of ``num_decks`` shuffled decks are shown one per step as a one-hot suit [4]. At each step
the action (a suit, Discrete(4)) is scored against the card shown k - 1 steps before the current
observation, i.e. the k-th most recent card including the current one; the first k - 1 steps have
no such card and give reward 0. Every scored step gives +-1 / (num_cards - k), so an episode's
return lies in [-1, 1]. The episode ends (terminated) after num_cards - 1 steps, when the last
card has been shown. The memory needed is a window of the last k cards.

Settings as in POPGym: Easy 1 deck, k = 4; Medium 2 decks, k = 32; Hard 3 decks, k = 64.
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
class RepeatPreviousState(environment.EnvState):
    recent: jax.Array  # [k] int32: card shown at step t is at slot t % k (the last k cards)
    undealt: jax.Array  # [4] int32: cards of each suit still in the deck
    time: int


class RepeatPrevious(CardGame):
    def __init__(self, num_decks: int = 1, k: int = 4):
        check_num_decks(num_decks)
        num_cards = CARDS_PER_DECK * num_decks
        if not isinstance(k, int) or not 1 <= k < num_cards:
            raise ValueError(
                f"k ({k!r}) must be an integer in [1, {num_cards}) for {num_decks} decks"
            )
        self.num_decks = num_decks
        self.k = k
        self.num_cards = num_cards
        self.episode_length = num_cards - 1
        self.obs_size = NUM_SUITS
        self.reward_scale = 1.0 / (num_cards - k)

    @property
    def num_actions(self) -> int:
        return NUM_SUITS

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, RepeatPreviousState]:
        card, undealt = deal(key, full_deck(self.num_decks))
        recent = jnp.zeros((self.k,), jnp.int32).at[0].set(card)
        state = RepeatPreviousState(recent=recent, undealt=undealt, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: RepeatPreviousState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, RepeatPreviousState, jax.Array, jax.Array, dict]:
        # The current card is number `time`; the target, k - 1 cards before it, is number
        # time + 1 - k, in the slot the next card will overwrite.
        next_time = state.time + 1
        slot = next_time % self.k
        reward = jnp.where(
            next_time >= self.k,
            signed_reward(action == state.recent[slot], self.reward_scale),
            0.0,
        )
        card, undealt = deal(key, state.undealt)
        state = RepeatPreviousState(
            recent=state.recent.at[slot].set(card), undealt=undealt, time=next_time
        )
        terminated = self.is_terminated(state, params)
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state: RepeatPreviousState, params=None, key=None) -> jax.Array:
        return one_hot(state.recent[state.time % self.k], NUM_SUITS)


DIFFICULTIES = {
    "Easy": dict(num_decks=1, k=4),
    "Medium": dict(num_decks=2, k=32),
    "Hard": dict(num_decks=3, k=64),
}
"""POPGym's settings: make("RepeatPreviousHard") builds RepeatPrevious(**DIFFICULTIES["Hard"])."""
