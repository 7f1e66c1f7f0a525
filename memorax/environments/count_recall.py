"""CountRecall (POPGym): say how many cards of the queried kind have been dealt so far.

Two independently shuffled stacks of ``num_decks`` decks are dealt in parallel: at each step the
observation shows a dealt card and a query card, each as a one-hot over the card attribute
(colours, suits or ranks), concatenated: [2 * num_values]. The action is scored against the number
of dealt cards, up to and including the current one, whose attribute equals the current query:
+-1 / (num_cards - 1) per step, so an episode's return lies in [-1, 1]. The episode ends
(terminated) after num_cards - 1 steps. The memory needed is a count per card kind.

Every count from 0 to num_cards / num_values can come up (the whole deck may be dealt before it
is queried), so the action space is Discrete(num_cards / num_values + 1), as in popgym 1.0.7
(checked in tests/test_popgym_cards.py; the JAX port popjaxrl caps the answers lower).

Settings as in POPGym: Easy 1 deck of colours, Medium 2 decks of suits, Hard 4 decks of ranks.
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


@struct.dataclass
class CountRecallState(environment.EnvState):
    value: jax.Array  # int32: kind of the card dealt now
    query: jax.Array  # int32: kind asked about now
    undealt_values: jax.Array  # [kinds] int32: cards of each kind still in the dealt deck
    undealt_queries: jax.Array  # [kinds] int32: cards of each kind still in the query deck
    time: int


class CountRecall(CardGame):
    def __init__(self, num_decks: int = 1, attribute: str = "colors"):
        check_num_decks(num_decks)
        if attribute not in CARD_ATTRIBUTES:
            raise ValueError(f"attribute ({attribute!r}) must be one of {list(CARD_ATTRIBUTES)}")
        self.num_decks = num_decks
        self.attribute = attribute
        self.num_values = CARD_ATTRIBUTES[attribute]
        self.num_cards = CARDS_PER_DECK * num_decks
        self.max_count = self.num_cards // self.num_values
        self.episode_length = self.num_cards - 1
        self.obs_size = 2 * self.num_values
        self.reward_scale = 1.0 / self.episode_length

    @property
    def num_actions(self) -> int:
        return self.max_count + 1

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, CountRecallState]:
        deck = full_deck(self.num_decks, self.attribute)
        state = self.deal(key, deck, deck, jnp.int32(0))
        return self.get_obs(state), state

    def deal(
        self, key: jax.Array, undealt_values: jax.Array, undealt_queries: jax.Array, time: jax.Array
    ) -> CountRecallState:
        value_key, query_key = jax.random.split(key)
        value, undealt_values = deal(value_key, undealt_values)
        query, undealt_queries = deal(query_key, undealt_queries)
        return CountRecallState(
            value=value,
            query=query,
            undealt_values=undealt_values,
            undealt_queries=undealt_queries,
            time=time,
        )

    def count(self, state: CountRecallState) -> jax.Array:
        """The right answer at this step: dealt cards so far (this one too) of the queried kind."""
        return self.max_count - state.undealt_values[state.query]

    def step_env(
        self,
        key: jax.Array,
        state: CountRecallState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, CountRecallState, jax.Array, jax.Array, dict]:
        reward = signed_reward(action == self.count(state), self.reward_scale)
        state = self.deal(key, state.undealt_values, state.undealt_queries, state.time + 1)
        terminated = self.is_terminated(state, params)
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state: CountRecallState, params=None, key=None) -> jax.Array:
        value = one_hot(state.value, self.num_values)
        query = one_hot(state.query, self.num_values)
        return jnp.concatenate([value, query])


DIFFICULTIES = {
    "Easy": dict(num_decks=1, attribute="colors"),
    "Medium": dict(num_decks=2, attribute="suits"),
    "Hard": dict(num_decks=4, attribute="ranks"),
}
"""POPGym's settings: make("CountRecallHard") builds CountRecall(**DIFFICULTIES["Hard"])."""
