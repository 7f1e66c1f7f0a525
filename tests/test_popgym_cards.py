"""RepeatFirst, RepeatPrevious, CountRecall and Autoencode against POPGym's numpy envs (1.0.7).

The approach of test_popgym_reference.py's HigherLower test: our env starts from the card(s)
POPGym dealt at its reset, deals the rest of the deck itself, and POPGym's deck is then stacked
in the order ours dealt. Both envs play the same actions (a random player's, then an expert's
that remembers what it was shown, so that every kind of reward occurs) and must give the same
observations (POPGym's one-hot encoded here), rewards, terminations and truncations.

Differences from POPGym are asserted where they arise, each under a comment "DIFFERENCE:".
"""

from collections.abc import Callable
from typing import Any

import gymnasium
import jax.numpy as jnp
import numpy as np
import pytest
from popgym.core.deck import Deck
from popgym.envs import autoencode as popgym_autoencode
from popgym.envs import count_recall as popgym_count_recall
from popgym.envs import repeat_first as popgym_repeat_first
from popgym.envs import repeat_previous as popgym_repeat_previous

from memorax.environments.autoencode import AutoencodeState
from memorax.environments.count_recall import CountRecallState
from memorax.environments.repeat_first import RepeatFirstState
from memorax.environments.repeat_previous import RepeatPreviousState
from tests.test_popgym_reference import (
    LEVELS,
    Trace,
    assert_same_trace,
    family,
    one_hot,
    one_hot_size,
    ours,
    play_ours,
    random_policy,
)

POPGYM_MODULES = {
    "RepeatFirst": popgym_repeat_first,
    "RepeatPrevious": popgym_repeat_previous,
    "CountRecall": popgym_count_recall,
    "Autoencode": popgym_autoencode,
}
ENV_IDS = [family + level for family in POPGYM_MODULES for level in LEVELS]
NUM_SUITS = 4


def popgym_env(env_id: str) -> gymnasium.Env:
    return getattr(POPGYM_MODULES[family(env_id)], env_id)()


def autoencode_obs(obs: tuple[int, int]) -> np.ndarray:
    """POPGym's Autoencode observation (mode, suit) in our layout: [one-hot suit, play flag]."""
    mode, suit = obs
    return np.append(np.eye(NUM_SUITS)[suit], float(mode == popgym_autoencode.Mode.PLAY))


def encode(env_id: str, reference: gymnasium.Env, obs: Any) -> np.ndarray:
    if family(env_id) == "Autoencode":
        return autoencode_obs(obs)
    return one_hot(reference.observation_space, obs)


def play_popgym(env_id: str, reference: gymnasium.Env, first_obs: Any, actions: list) -> Trace:
    trace = Trace(encode(env_id, reference, first_obs))
    for action in actions:
        obs, reward, terminated, truncated, _ = reference.step(action)
        trace.add(action, encode(env_id, reference, obs), reward, terminated, truncated)
    return trace


def stack_deck(deck: Deck, kind_of_card: np.ndarray, kinds: list[int], player: str) -> None:
    """Makes a POPGym deck, just reset with one card dealt to ``player``, deal cards of ``kinds``
    in this order: kinds[0] is the card already dealt. ``kind_of_card``: [num_cards] the kind
    (suit, colour or rank index) of each card id."""
    assert len(kinds) == deck.num_cards
    card_ids = {kind: list(np.flatnonzero(kind_of_card == kind)) for kind in set(kinds)}
    order = [card_ids[kind].pop() for kind in kinds]  # fails if ours dealt a card too many
    # POPGym deals from the end of deck.idx.
    deck.idx = np.array(order[::-1])
    deck.hands[player] = [deck.idx[-1]]
    assert len(deck) == deck.num_cards - 1


def suits(observations: list[np.ndarray]) -> list[int]:
    return [int(np.argmax(obs[:NUM_SUITS])) for obs in observations]


def check_action_and_obs_sizes(env_id: str, env: Any, reference: gymnasium.Env) -> None:
    """The action count and observation size, with the differences from POPGym named."""
    num_actions, obs_shape = env.action_space().n, env.observation_space().shape
    if family(env_id) == "CountRecall":
        # Not a difference: count_recall.py's docstring says POPGym's space is
        # Discrete(num_cards / num_values), one short of the largest count, but popgym 1.0.7 has
        # `self.action_space = gym.spaces.Discrete(self.max_card_count + 1)` (count_recall.py:75),
        # the same as ours.
        assert num_actions == reference.action_space.n == env.max_count + 1
    else:
        assert num_actions == reference.action_space.n
    if family(env_id) == "Autoencode":
        # DIFFERENCE: POPGym observes Tuple(Discrete(2), Discrete(4)) = (mode, suit), 2 + 4
        # one-hot entries; ours has 4 suit entries and a single play flag (= mode is PLAY).
        assert reference.observation_space == gymnasium.spaces.Tuple(
            (gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(NUM_SUITS))
        )
        assert obs_shape == (NUM_SUITS + 1,)
    else:
        assert obs_shape == (one_hot_size(reference.observation_space),)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_episode_lengths_equal_popgyms(env_id: str) -> None:
    env, params = ours(env_id)
    reference = popgym_env(env_id)
    check_action_and_obs_sizes(env_id, env, reference)
    # POPGym's episode under random actions: its length, and that the deck running out ends it.
    obs, _ = reference.reset(seed=0)
    trace = play_popgym(env_id, reference, obs, [])
    rng = np.random.default_rng(0)
    while not trace.done:
        action = int(rng.integers(reference.action_space.n))
        obs, reward, terminated, truncated, _ = reference.step(action)
        trace.add(action, encode(env_id, reference, obs), reward, terminated, truncated)
    assert env.episode_length == params.max_steps_in_episode == reference.max_episode_length
    assert len(trace.actions) == env.episode_length
    assert trace.terminated == [False] * (env.episode_length - 1) + [True]
    assert not any(trace.truncated)


# ---------------------------------------------------------------------------------------------
# Policies on our observations: random, and experts that answer right from what they were shown.


def first_card_expert(env: Any) -> Callable:
    first: list[int] = []

    def policy(obs: np.ndarray, reward: float) -> int:
        first[:] = first or [int(np.argmax(obs))]
        return first[0]

    return policy


def previous_card_expert(env: Any) -> Callable:
    shown: list[int] = []

    def policy(obs: np.ndarray, reward: float) -> int:
        shown.append(int(np.argmax(obs)))
        return shown[-env.k] if len(shown) >= env.k else 0

    return policy


def counting_expert(env: Any) -> Callable:
    counts = np.zeros(env.num_values, int)

    def policy(obs: np.ndarray, reward: float) -> int:
        value, query = np.argmax(obs.reshape(2, env.num_values), axis=1)
        counts[value] += 1
        return int(counts[query])

    return policy


def reciting_expert(env: Any) -> Callable:
    shown: list[int] = []

    def policy(obs: np.ndarray, reward: float) -> int:
        if obs[:NUM_SUITS].any():
            shown.append(int(np.argmax(obs[:NUM_SUITS])))
        return shown.pop() if obs[NUM_SUITS] else 0

    return policy


def play_both(
    env_id: str,
    our_state: Callable[[Any, Any], Any],
    stack: Callable[[gymnasium.Env, Trace], None],
    expert: Callable[[Any], Callable],
) -> list[tuple[Trace, Trace]]:
    """(ours, POPGym's) traces of a random player's episode and of ``expert(env)``'s: ours starts
    from ``our_state(env, POPGym's first observation)``; ``stack`` then gives POPGym the cards
    ours dealt, and POPGym replays our actions."""
    env, _ = ours(env_id)
    policies = [(1, random_policy(env.num_actions, 1)), (2, expert(env))]
    traces = []
    for seed, policy in policies:
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        trace = play_ours(env_id, our_state(env, first_obs), policy, seed)
        stack(reference, trace)
        traces.append((trace, play_popgym(env_id, reference, first_obs, trace.actions)))
    return traces


def check_rewards(env: Any, random_trace: Trace, expert_trace: Trace, unscored: int) -> None:
    """The first ``unscored`` steps give 0; the expert is always right, for a return of 1, and
    the random player is sometimes wrong."""
    for trace in (random_trace, expert_trace):
        assert trace.reward[:unscored] == [0.0] * unscored
    assert all(reward > 0 for reward in expert_trace.reward[unscored:])
    assert sum(expert_trace.reward) == pytest.approx(1.0, rel=1e-5)
    assert min(random_trace.reward) < 0


def undealt_after(first: int, env: Any, num_kinds: int) -> jnp.ndarray:
    per_kind = env.num_cards // num_kinds
    return jnp.full((num_kinds,), per_kind, jnp.int32).at[first].add(-1)


@pytest.mark.parametrize("level", LEVELS)
def test_repeat_first_steps_like_popgym(level: str) -> None:
    def our_state(env: Any, first_obs: int) -> RepeatFirstState:
        first = jnp.int32(first_obs)
        undealt = undealt_after(first_obs, env, NUM_SUITS)
        return RepeatFirstState(first=first, card=first, undealt=undealt, time=jnp.int32(0))

    def stack(reference: gymnasium.Env, trace: Trace) -> None:
        deck = reference.deck
        stack_deck(deck, deck.suits_idx, suits(trace.obs), "player")

    env_id = "RepeatFirst" + level
    traces = play_both(env_id, our_state, stack, first_card_expert)
    for trace, popgym_trace in traces:
        assert_same_trace(trace, popgym_trace)
    check_rewards(ours(env_id)[0], traces[0][0], traces[1][0], unscored=0)


@pytest.mark.parametrize("level", LEVELS)
def test_repeat_previous_steps_like_popgym(level: str) -> None:
    def our_state(env: Any, first_obs: int) -> RepeatPreviousState:
        recent = jnp.zeros((env.k,), jnp.int32).at[0].set(first_obs)
        undealt = undealt_after(first_obs, env, NUM_SUITS)
        return RepeatPreviousState(recent=recent, undealt=undealt, time=jnp.int32(0))

    def stack(reference: gymnasium.Env, trace: Trace) -> None:
        deck = reference.deck
        stack_deck(deck, deck.suits_idx, suits(trace.obs), "player")

    env_id = "RepeatPrevious" + level
    env, _ = ours(env_id)
    traces = play_both(env_id, our_state, stack, previous_card_expert)
    for trace, popgym_trace in traces:
        assert_same_trace(trace, popgym_trace)
    check_rewards(env, traces[0][0], traces[1][0], unscored=env.k - 1)


@pytest.mark.parametrize("level", LEVELS)
def test_count_recall_steps_like_popgym(level: str) -> None:
    def our_state(env: Any, first_obs: np.ndarray) -> CountRecallState:
        value, query = (int(kind) for kind in first_obs)
        return CountRecallState(
            value=jnp.int32(value),
            query=jnp.int32(query),
            undealt_values=undealt_after(value, env, env.num_values),
            undealt_queries=undealt_after(query, env, env.num_values),
            time=jnp.int32(0),
        )

    def stack(reference: gymnasium.Env, trace: Trace) -> None:
        num_values = reference.num_distinct_cards
        values, queries = np.array(
            [np.argmax(obs.reshape(2, num_values), axis=1) for obs in trace.obs]
        ).T
        # Both decks index the attribute (colour, suit or rank) with the value deck's table.
        stack_deck(reference.value_deck, reference.deck_idx_type, list(values), "in_play")
        stack_deck(reference.query_deck, reference.deck_idx_type, list(queries), "in_play")

    env_id = "CountRecall" + level
    env, _ = ours(env_id)
    traces = play_both(env_id, our_state, stack, counting_expert)
    for trace, popgym_trace in traces:
        assert_same_trace(trace, popgym_trace)
    check_rewards(env, traces[0][0], traces[1][0], unscored=0)
    # Some query came after every card of its kind had been dealt: the largest count was asked.
    if level == "Easy":
        assert env.max_count in traces[1][0].actions


@pytest.mark.parametrize("level", LEVELS)
def test_autoencode_steps_like_popgym(level: str) -> None:
    def our_state(env: Any, first_obs: tuple[int, int]) -> AutoencodeState:
        _, suit = first_obs
        cards = jnp.zeros((env.num_cards,), jnp.int32).at[0].set(suit)
        undealt = undealt_after(suit, env, NUM_SUITS)
        return AutoencodeState(cards=cards, undealt=undealt, time=jnp.int32(0))

    def stack(reference: gymnasium.Env, trace: Trace) -> None:
        deck = reference.deck
        # The first num_cards observations show the cards, in deal order.
        stack_deck(deck, deck.suits_idx, suits(trace.obs[: deck.num_cards]), "system")

    env_id = "Autoencode" + level
    env, _ = ours(env_id)
    traces = play_both(env_id, our_state, stack, reciting_expert)
    for trace, popgym_trace in traces:
        # DIFFERENCE: once the cards are hidden (every observation after the one that shows the
        # last card), POPGym shows suit 0 in the card slot (autoencode.py, play phase:
        # `obs = self.make_obs(np.array([0]))`, the suit of card id 0, a spade); ours shows no
        # card (all zeros). Both carry no information; the play flag is 1 on both sides.
        hidden = slice(env.num_cards, None)
        play_suit_0 = np.eye(NUM_SUITS + 1)[0] + np.eye(NUM_SUITS + 1)[NUM_SUITS]
        play_no_card = np.eye(NUM_SUITS + 1)[NUM_SUITS]
        np.testing.assert_array_equal(popgym_trace.obs[hidden], [play_suit_0] * env.num_cards)
        np.testing.assert_array_equal(trace.obs[hidden], [play_no_card] * env.num_cards)
        popgym_trace.obs[hidden] = trace.obs[hidden]
        assert_same_trace(trace, popgym_trace)
    check_rewards(env, traces[0][0], traces[1][0], unscored=env.num_cards - 1)
