"""HigherLower (POPGym): guess whether the next card will rank higher or lower than this one.

Cards of ``num_decks`` shuffled decks are dealt one per step. The observation is the rank of the
card just dealt, ace low: POPGym's Discrete(13) rank index, one-hot: [13]. The action bets on the
next card: 0 higher, 1 lower (Discrete(2), POPGym's order). The bet scores +1 / num_cards when
right, -1 / num_cards when wrong and 0 when the two ranks are equal, so an episode's return lies in
[-1, 1]. The episode ends (terminated) after num_cards - 1 steps, when the last card is dealt.

From the card in view alone the best bet is "higher" below a 7 and "lower" above it; counting the
cards dealt so far tells which ranks are left in the deck, which is what memory buys here.

Settings as in POPGym: Easy 1 deck, Medium 2 decks, Hard 3 decks.
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from memorax.environments.cards import (
    CARD_ATTRIBUTES,
    CARDS_PER_DECK,
    CardGame,
    check_num_decks,
    deal,
    full_deck,
    one_hot,
    signed_reward,
)

NUM_RANKS = CARD_ATTRIBUTES["ranks"]
HIGHER = 0
"""The action that bets on a higher next card; any other action bets on a lower one."""


@struct.dataclass
class HigherLowerState(environment.EnvState):
    card: jax.Array  # int32: rank of the card shown now (0 = ace, 12 = king)
    undealt: jax.Array  # [13] int32: cards of each rank still in the deck
    time: int


class HigherLower(CardGame):
    def __init__(self, num_decks: int = 1):
        check_num_decks(num_decks)
        self.num_decks = num_decks
        self.num_cards = CARDS_PER_DECK * num_decks
        self.episode_length = self.num_cards - 1
        self.obs_size = NUM_RANKS
        # POPGym scores each bet 1 / num_cards (not 1 / bets), so even a perfect return is < 1.
        self.reward_scale = 1.0 / self.num_cards

    @property
    def num_actions(self) -> int:
        return 2

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, HigherLowerState]:
        card, undealt = deal(key, full_deck(self.num_decks, "ranks"))
        state = HigherLowerState(card=card, undealt=undealt, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: HigherLowerState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, HigherLowerState, jax.Array, jax.Array, dict]:
        next_card, undealt = deal(key, state.undealt)
        went_higher = next_card > state.card
        bet_right = jnp.where(action == HIGHER, went_higher, ~went_higher)
        tie = next_card == state.card
        reward = jnp.where(tie, 0.0, signed_reward(bet_right, self.reward_scale))
        state = HigherLowerState(card=next_card, undealt=undealt, time=state.time + 1)
        terminated = self.is_terminated(state, params)
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state: HigherLowerState, params=None, key=None) -> jax.Array:
        return one_hot(state.card, NUM_RANKS)


DIFFICULTIES = {"Easy": dict(num_decks=1), "Medium": dict(num_decks=2), "Hard": dict(num_decks=3)}
"""POPGym's settings: make("HigherLowerHard") builds HigherLower(**DIFFICULTIES["Hard"])."""
