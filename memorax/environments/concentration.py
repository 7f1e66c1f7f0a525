"""Concentration (POPGym): turn cards up two at a time and find every matching pair.

The cards of ``num_decks`` shuffled decks lie face down on a board of num_cards positions; two
cards match when they share ``attribute`` (colour or rank). Each action turns up one position
(Discrete(num_cards)) and a turn is two actions. Rewards, with L = episode_length:

- the first card of a turn: 0;
- a second card that matches the first (at another position): +1 / (num_cards / 2); the pair
  stays face up, and the episode terminates when the whole board is;
- a second card that does not match, or the first card again: -2 / L; both go face down again;
- turning up a card that is already face up ends the turn at once: -1 / L per card turned up in
  that turn (-1 / L as a turn's first card, -2 / L as its second).

The episode is truncated after L = ceil(2 n - n / (2 n - 1)) steps, n = num_cards (POPGym's
estimate of a perfect player's episode; it is 2 n for every setting here). A turn's failure
costs at most 1 / L per step and the pairs are worth 1 in all, so a return lies in [-1, 1].

The observation is the board as POPGym shows it. A position shows its card's kind when the card
is face up or was turned up in the turn this step played (so the step that ends a failed turn
shows both of its cards), and "face down" otherwise: POPGym's MultiDiscrete([kinds + 1] *
num_cards), face down = kinds, as a one-hot per position flattened position-major:
[num_cards * (kinds + 1)]. The action is not in the observation when it turns up a card that is
already face up, so POPGym marks the task as needing the previous action: ``--use-prev-action``.

The board is dealt lazily: a position's card is drawn from the undealt cards the first time it is
turned up. That has the law of a shuffled board (each unseen position is equally likely to hold
any undealt card), and the reset that gymnax computes at every step of an auto-resetting env
fills two board-sized arrays instead of shuffling the board.

Settings as in POPGym: Easy 1 deck by colour, Medium 2 decks by colour, Hard 1 deck by rank.
"""

import math

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
)

NO_POSITION = -1
"""``first`` between turns, ``shown`` where fewer than two cards were turned up, ``board`` where
no card has been dealt yet."""


@struct.dataclass
class ConcentrationState(environment.EnvState):
    board: jax.Array  # [num_cards] int32: kind of the card at each position; -1: not dealt yet
    undealt: jax.Array  # [kinds] int32: cards of each kind not yet placed on the board
    face_up: jax.Array  # [num_cards] bool: the cards of the pairs found so far
    first: jax.Array  # int32: position of the turn's first card; -1 between turns
    shown: jax.Array  # [2] int32: positions turned up in the turn this step played; -1: none
    time: int


class Concentration(CardGame):
    def __init__(self, num_decks: int = 1, attribute: str = "colors"):
        check_num_decks(num_decks)
        if attribute not in CARD_ATTRIBUTES:
            raise ValueError(f"attribute ({attribute!r}) must be one of {list(CARD_ATTRIBUTES)}")
        self.num_decks = num_decks
        self.attribute = attribute
        self.num_kinds = CARD_ATTRIBUTES[attribute]
        self.num_cards = CARDS_PER_DECK * num_decks
        per_kind = self.num_cards // self.num_kinds
        if per_kind % 2:
            raise ValueError(
                f"attribute={attribute!r} with num_decks={num_decks} leaves {per_kind} cards of "
                "each kind, an odd number, so the board cannot be cleared: match 'colors' or "
                "'ranks', or use an even num_decks"
            )
        n = self.num_cards
        self.episode_length = math.ceil(2 * n - n / (2 * n - 1))
        self.obs_size = self.num_cards * (self.num_kinds + 1)
        self.pair_reward = 1.0 / (self.num_cards // 2)
        self.failure_cost = 1.0 / self.episode_length

    @property
    def num_actions(self) -> int:
        return self.num_cards

    def is_terminated(self, state: ConcentrationState, params: environment.EnvParams) -> jax.Array:
        return jnp.all(state.face_up)

    def is_truncated(self, state: ConcentrationState, params: environment.EnvParams) -> jax.Array:
        # POPGym's episode length is a time limit; a shorter max_steps_in_episode truncates earlier.
        limit = jnp.minimum(params.max_steps_in_episode, self.episode_length)
        return jnp.asarray(state.time >= limit)

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, ConcentrationState]:
        state = ConcentrationState(
            board=jnp.full((self.num_cards,), NO_POSITION, jnp.int32),
            undealt=full_deck(self.num_decks, self.attribute),
            face_up=jnp.zeros((self.num_cards,), bool),
            first=jnp.int32(NO_POSITION),
            shown=jnp.full((2,), NO_POSITION, jnp.int32),
            time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: ConcentrationState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, ConcentrationState, jax.Array, jax.Array, dict]:
        # Deal the card under the turned-up position if no one has looked at it yet.
        kind, undealt = deal(key, state.undealt)
        unseen = state.board[action] == NO_POSITION
        board = jnp.where(unseen, state.board.at[action].set(kind), state.board)
        undealt = jnp.where(unseen, undealt, state.undealt)

        second_card = state.first != NO_POSITION
        already_up = state.face_up[action]
        match = (
            second_card
            & ~already_up
            & (state.first != action)
            & (board[state.first] == board[action])
        )
        reward = jnp.where(
            second_card,
            jnp.where(match, self.pair_reward, -2 * self.failure_cost),
            jnp.where(already_up, -self.failure_cost, 0.0),
        ).astype(jnp.float32)
        face_up = jnp.where(
            match, state.face_up.at[action].set(True).at[state.first].set(True), state.face_up
        )
        state = ConcentrationState(
            board=board,
            undealt=undealt,
            face_up=face_up,
            # The turn goes on only after a first card that was face down.
            first=jnp.where(second_card | already_up, NO_POSITION, action).astype(jnp.int32),
            shown=jnp.stack([jnp.where(second_card, state.first, NO_POSITION), action]).astype(
                jnp.int32
            ),
            time=state.time + 1,
        )
        return self.get_obs(state), state, reward, self.is_terminated(state, params), {}

    def get_obs(self, state: ConcentrationState, params=None, key=None) -> jax.Array:
        positions = jnp.arange(self.num_cards)
        visible = state.face_up | (positions == state.shown[0]) | (positions == state.shown[1])
        face_down = self.num_kinds
        cards = jnp.where(visible, state.board, face_down)
        return one_hot(cards, self.num_kinds + 1).reshape(-1)


DIFFICULTIES = {
    "Easy": dict(num_decks=1, attribute="colors"),
    "Medium": dict(num_decks=2, attribute="colors"),
    "Hard": dict(num_decks=1, attribute="ranks"),
}
"""POPGym's settings: make("ConcentrationHard") builds Concentration(**DIFFICULTIES["Hard"])."""
