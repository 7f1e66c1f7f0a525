"""What the POPGym card games share: a shuffled deck, one-hot cards and the end-of-deck rule.

POPGym (Morad et al., ICLR 2023) builds its memory tasks from decks of 52 playing cards. A task
only ever looks at one attribute of a card (its colour, suit or rank), so a shuffled deck is, for
our purposes, a random permutation of that attribute repeated evenly over the deck. Drawing the
whole deck up front at reset makes every later step a pure lookup, which jits and vmaps cleanly.

Episodes of these tasks end at a fixed step (the deck runs out): that is a real terminal, reported
as ``terminated``. ``truncated`` is reserved for a time limit (``max_steps_in_episode``) set
shorter than the natural episode; by default it equals the natural length and never fires.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

CARDS_PER_DECK = 52
CARD_ATTRIBUTES = {"colors": 2, "suits": 4, "ranks": 13}
"""Number of distinct values of each card attribute in a 52-card deck."""


def shuffled_deck(key: jax.Array, num_decks: int, attribute: str = "suits") -> jax.Array:
    """Attribute of each card of ``num_decks`` shuffled decks, in deal order: [52 * num_decks].

    Every value appears equally often (a deck has 26 cards of each colour, 13 of each suit, 4 of
    each rank), exactly as in a real deck; only the order is random.
    """
    num_values = CARD_ATTRIBUTES[attribute]
    num_cards = CARDS_PER_DECK * num_decks
    deck = jnp.arange(num_cards, dtype=jnp.int32) % num_values
    return jax.random.permutation(key, deck)


def one_hot(value: jax.Array, num_values: int) -> jax.Array:
    """Float one-hot encoding of an integer card value: [num_values]."""
    return jax.nn.one_hot(value, num_values, dtype=jnp.float32)


def check_num_decks(num_decks: int) -> None:
    if not isinstance(num_decks, int) or num_decks < 1:
        raise ValueError(f"num_decks ({num_decks!r}) must be a positive integer, e.g. num_decks=1")


@struct.dataclass
class DeckState(environment.EnvState):
    cards: jax.Array  # [num_cards] int32: the attribute of each card, in deal order
    time: int


class CardGame(environment.Environment[Any, environment.EnvParams]):
    """Base of the card tasks: natural episode length, float observations, Discrete actions.

    Subclasses set ``episode_length`` (steps until the task ends by itself), ``num_actions`` and
    ``obs_size`` and implement ``reset_env``/``step_env``.
    """

    episode_length: int
    obs_size: int

    @property
    def default_params(self) -> environment.EnvParams:
        return environment.EnvParams(max_steps_in_episode=self.episode_length)

    def is_terminated(self, state: Any, params: environment.EnvParams) -> jax.Array:
        return jnp.asarray(state.time >= self.episode_length)

    def is_truncated(self, state: Any, params: environment.EnvParams) -> jax.Array:
        # The deck running out is a true terminal, so a time limit only truncates before it.
        return jnp.logical_and(
            state.time >= params.max_steps_in_episode, state.time < self.episode_length
        )

    @property
    def name(self) -> str:
        return type(self).__name__

    def action_space(self, params: environment.EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: environment.EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.obs_size,), jnp.float32)


def signed_reward(correct: jax.Array, scale: float) -> jax.Array:
    """POPGym's per-step reward: +scale when the answer is right, -scale when wrong."""
    return jnp.where(correct, scale, -scale).astype(jnp.float32)
