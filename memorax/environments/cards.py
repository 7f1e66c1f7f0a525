"""What the POPGym card games share: a shuffled deck, one-hot cards and the end-of-deck rule.

POPGym (Morad et al., ICLR 2023) builds its memory tasks from decks of 52 playing cards. A task
only ever looks at one attribute of a card (its colour, suit or rank), so a deck is, for our
purposes, how many cards of each kind are still undealt. Dealing draws the next card's kind with
probability proportional to those counts, which is exactly the law of dealing from a shuffled
deck. It costs O(kinds) per card, where shuffling the deck at reset would cost a sort of the whole
deck at every step: gymnax's ``step`` computes a fresh reset each step to auto-reset under vmap.

Episodes of these tasks end at a fixed step (the deck runs out): that is a real terminal, reported
as ``terminated``. ``truncated`` is reserved for a time limit (``max_steps_in_episode``) set
shorter than the natural episode; by default it equals the natural length and never fires.
"""

from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

CARDS_PER_DECK = 52
CARD_ATTRIBUTES = {"colors": 2, "suits": 4, "ranks": 13}
"""Number of distinct values of each card attribute in a 52-card deck."""


def full_deck(num_decks: int, attribute: str = "suits") -> jax.Array:
    """Undealt cards of each kind in ``num_decks`` fresh decks: [kinds] int32.

    A deck has 26 cards of each colour, 13 of each suit and 4 of each rank.
    """
    num_kinds = CARD_ATTRIBUTES[attribute]
    return jnp.full((num_kinds,), CARDS_PER_DECK * num_decks // num_kinds, jnp.int32)


def deal(key: jax.Array, undealt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Deals one card: (its kind, the undealt counts without it). The deck must not be empty."""
    card = jax.random.categorical(key, jnp.log(undealt.astype(jnp.float32))).astype(jnp.int32)
    return card, undealt.at[card].add(-1)


def one_hot(value: jax.Array, num_values: int) -> jax.Array:
    """Float one-hot encoding of an integer card value: [num_values]."""
    return jax.nn.one_hot(value, num_values, dtype=jnp.float32)


def check_num_decks(num_decks: int) -> None:
    if not isinstance(num_decks, int) or num_decks < 1:
        raise ValueError(f"num_decks ({num_decks!r}) must be a positive integer, e.g. num_decks=1")


class CardGame(environment.Environment[Any, environment.EnvParams]):
    """Base of the card tasks: natural episode length, float observations, Discrete actions.

    Subclasses set ``episode_length`` (steps until the task ends by itself), ``num_actions`` and
    ``obs_size`` and implement ``reset_env``/``step_env``.
    """

    episode_length: int
    obs_size: int
    env_id: str | None = None
    """The registry id this env was built under (e.g. "RepeatFirstEasy"), which is then its name."""

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
        return self.env_id or type(self).__name__

    def action_space(self, params: environment.EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: environment.EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.obs_size,), jnp.float32)


def signed_reward(correct: jax.Array, scale: float) -> jax.Array:
    """POPGym's per-step reward: +scale when the answer is right, -scale when wrong."""
    return jnp.where(correct, scale, -scale).astype(jnp.float32)


def _mix(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 in which every input bit flips
    each output bit with probability about 1/2."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def random_words(key: jax.Array, num_words: int) -> jax.Array:
    """``num_words`` random uint32 words for a board layout: [num_words].

    Two words of ``jax.random.bits`` key a counter that is hashed twice with MurmurHash3's
    finaliser (as SplitMix does). A layout drawn at every step of an auto-resetting env (gymnax
    computes the reset under vmap whether it is taken or not) needs dozens of words, and threefry
    (20 rounds for every two words) cost several times the rest of the reset on a CPU
    (benchmarks/popgym_reset.py); the hash costs one threefry block and a few integer operations
    per word. The layouts' laws are checked against POPGym's in tests/test_popgym_boards.py.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    counter = jnp.arange(num_words, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)
    return _mix(_mix(seed[0] + counter) ^ seed[1])
