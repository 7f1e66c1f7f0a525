"""Autoencode (POPGym): watch a deck being dealt, then recite its suits in reverse order.

Watch phase: the cards of ``num_decks`` shuffled decks are shown one per step, as a one-hot suit
plus a phase flag: [4 suits, play]. Actions are ignored and give reward 0. The observation that
shows the last card already carries play = 1, announcing the play phase.

Play phase: the card slots are all zero (the cards are hidden) and play = 1. At each step the
action (a suit, Discrete(4)) is scored against the next card in reverse deal order (last card
first): +-1 / num_cards, so an episode's return lies in [-1, 1]. The episode ends (terminated)
once every card has been recited: num_cards - 1 watch steps plus num_cards play steps. The memory
needed is the whole sequence of suits.

Settings as in POPGym: Easy 1 deck, Medium 2 decks, Hard 3 decks.
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
class AutoencodeState(environment.EnvState):
    cards: jax.Array  # [num_cards] int32: suits dealt so far, in deal order (0 beyond)
    undealt: jax.Array  # [4] int32: cards of each suit still in the deck
    time: int


class Autoencode(CardGame):
    def __init__(self, num_decks: int = 1):
        check_num_decks(num_decks)
        self.num_decks = num_decks
        self.num_cards = CARDS_PER_DECK * num_decks
        self.episode_length = 2 * self.num_cards - 1
        self.obs_size = NUM_SUITS + 1
        self.reward_scale = 1.0 / self.num_cards

    @property
    def num_actions(self) -> int:
        return NUM_SUITS

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, AutoencodeState]:
        card, undealt = deal(key, full_deck(self.num_decks))
        cards = jnp.zeros((self.num_cards,), jnp.int32).at[0].set(card)
        state = AutoencodeState(cards=cards, undealt=undealt, time=jnp.int32(0))
        return self.get_obs(state), state

    def target(self, state: AutoencodeState) -> jax.Array:
        """The card to recite at this step (meaningful in the play phase only)."""
        play_step = state.time - (self.num_cards - 1)
        return state.cards[jnp.clip(self.num_cards - 1 - play_step, 0, self.num_cards - 1)]

    def step_env(
        self,
        key: jax.Array,
        state: AutoencodeState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, AutoencodeState, jax.Array, jax.Array, dict]:
        playing = state.time >= self.num_cards - 1
        reward = jnp.where(
            playing, signed_reward(action == self.target(state), self.reward_scale), 0.0
        )
        # Deal the next card while watching; the deck is empty once play starts.
        card, undealt = deal(key, jnp.maximum(state.undealt, playing.astype(jnp.int32)))
        next_time = state.time + 1
        state = AutoencodeState(
            cards=jnp.where(playing, state.cards, state.cards.at[next_time].set(card)),
            undealt=jnp.where(playing, state.undealt, undealt),
            time=next_time,
        )
        terminated = self.is_terminated(state, params)
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state: AutoencodeState, params=None, key=None) -> jax.Array:
        shown = state.time < self.num_cards
        card = one_hot(state.cards[jnp.minimum(state.time, self.num_cards - 1)], NUM_SUITS)
        card = jnp.where(shown, card, jnp.zeros_like(card))
        playing = (state.time >= self.num_cards - 1).astype(jnp.float32)
        return jnp.concatenate([card, playing[None]])


DIFFICULTIES = {"Easy": dict(num_decks=1), "Medium": dict(num_decks=2), "Hard": dict(num_decks=3)}
"""POPGym's settings: make("AutoencodeHard") builds Autoencode(**DIFFICULTIES["Hard"])."""
