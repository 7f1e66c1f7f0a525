"""HigherLower, MultiarmedBandit and Concentration against POPGym's own numpy envs (popgym 1.0.7).

Step for step: both envs are put into the same hidden state (the deck order, the arms, the board),
play the same actions, and must give the same observations (POPGym's discrete observations
one-hot encoded here, independently of memorax), rewards, terminations and truncations. Our card
games deal lazily from card counts, so where our env draws the cards POPGym is then handed the
deck ours dealt. Where draws are random on both sides (a bandit's payouts, the deal), the return
distributions of fixed policies must agree.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from popgym.envs import concentration as popgym_concentration
from popgym.envs import higher_lower as popgym_higher_lower
from popgym.envs import multiarmed_bandit as popgym_bandit

from memorax.environments import POPGYM_GAMES, EpisodeStatistics, make
from memorax.environments.concentration import ConcentrationState
from memorax.environments.higher_lower import HigherLowerState
from memorax.environments.multiarmed_bandit import MultiarmedBanditState

LEVELS = ("Easy", "Medium", "Hard")
POPGYM_MODULES = {
    "HigherLower": popgym_higher_lower,
    "MultiarmedBandit": popgym_bandit,
    "Concentration": popgym_concentration,
}
ENV_IDS = [family + level for family in POPGYM_MODULES for level in LEVELS]


@functools.cache
def ours(env_id: str) -> tuple[Any, Any]:
    """One env per id for the whole file, so that its jitted step compiles once."""
    return make(env_id)


def family(env_id: str) -> str:
    return env_id.removesuffix("Easy").removesuffix("Medium").removesuffix("Hard")


def popgym_env(env_id: str) -> gymnasium.Env:
    return getattr(POPGYM_MODULES[family(env_id)], env_id)()


def one_hot_size(space: gymnasium.Space) -> int:
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.n)
    return int(np.sum(space.nvec))


def one_hot(space: gymnasium.Space, obs: Any) -> np.ndarray:
    """POPGym's observation as ours should show it: each discrete entry one-hot, concatenated."""
    sizes = [int(space.n)] if isinstance(space, gymnasium.spaces.Discrete) else space.nvec
    values = np.atleast_1d(obs)
    return np.concatenate([np.eye(size)[value] for size, value in zip(sizes, values, strict=True)])


class Trace:
    """What one env emitted: the first observation, then per step (obs, reward, ends)."""

    def __init__(self, first_obs: np.ndarray):
        self.obs = [np.asarray(first_obs, np.float32)]
        self.reward, self.terminated, self.truncated, self.actions = [], [], [], []

    def add(self, action, obs, reward, terminated, truncated) -> None:
        self.actions.append(int(action))
        self.obs.append(np.asarray(obs, np.float32))
        self.reward.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))

    @property
    def done(self) -> bool:
        return bool(self.actions) and (self.terminated[-1] or self.truncated[-1])


def assert_same_trace(ours_trace: Trace, popgym_trace: Trace) -> None:
    assert ours_trace.actions == popgym_trace.actions
    for t, (a, b) in enumerate(zip(ours_trace.obs, popgym_trace.obs, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"observation after step {t}")
    # Rewards are float32 on our side.
    np.testing.assert_allclose(ours_trace.reward, popgym_trace.reward, rtol=1e-6, atol=1e-7)
    assert ours_trace.terminated == popgym_trace.terminated
    assert ours_trace.truncated == popgym_trace.truncated


def play_ours(env_id: str, state: Any, policy: Callable, seed: int) -> Trace:
    """Steps our env from ``state`` to the end of its episode; ``policy(obs, reward)``."""
    env, params = ours(env_id)
    trace = Trace(env.get_obs(state))
    keys = jax.random.split(jax.random.key(seed), env.episode_length)
    reward = 0.0
    while not trace.done:
        action = policy(trace.obs[-1], reward)
        _, state, reward, terminated, truncated, info = env.step(
            keys[len(trace.actions)], state, action, params
        )
        # The step auto-resets at an episode's end: its last observation is in info.
        trace.add(action, info["final_observation"], reward, terminated, truncated)
    return trace


def play_popgym(env: gymnasium.Env, first_obs: Any, policy: Callable) -> Trace:
    trace = Trace(one_hot(env.observation_space, first_obs))
    reward = 0.0
    while not trace.done:
        action = policy(trace.obs[-1], reward)
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.add(action, one_hot(env.observation_space, obs), reward, terminated, truncated)
    return trace


def replay(actions: list[int]) -> Callable:
    moves = iter(actions)
    return lambda obs, reward: next(moves)


def random_policy(num_actions: int, seed: int) -> Callable:
    rng = np.random.default_rng(seed)
    return lambda obs, reward: int(rng.integers(num_actions))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_episode_lengths_equal_popgyms(env_id: str) -> None:
    env, params = ours(env_id)
    reference = popgym_env(env_id)
    assert env.action_space(params).n == reference.action_space.n
    assert env.observation_space(params).shape == (one_hot_size(reference.observation_space),)
    # POPGym's episode under random actions: its length, and how it ends.
    obs, _ = reference.reset(seed=0)
    trace = play_popgym(reference, obs, random_policy(reference.action_space.n, 0))
    assert env.episode_length == params.max_steps_in_episode == len(trace.actions)
    # The deck runs out; the bandit's horizon and random play's Concentration hit the time limit.
    terminates = family(env_id) == "HigherLower"
    assert (trace.terminated[-1], trace.truncated[-1]) == (terminates, not terminates)
    assert not any(trace.terminated[:-1] + trace.truncated[:-1])


# ---------------------------------------------------------------------------------------------
# HigherLower: ours deals, then POPGym's deck is stacked in the order ours dealt.


def card_counter(num_decks: int) -> Callable:
    """Bets on whichever side more undealt cards lie, counting every card seen (needs memory)."""
    undealt = np.full(13, 4 * num_decks)

    def policy(obs: np.ndarray, reward: float) -> int:
        rank = int(np.argmax(obs))
        undealt[rank] -= 1
        return 0 if undealt[rank + 1 :].sum() >= undealt[:rank].sum() else 1

    return policy


def stack_popgym_deck(reference: gymnasium.Env, ranks: list[int]) -> None:
    """Makes POPGym deal ``ranks`` in this order from now on, ranks[0] being the card shown."""
    deck = reference.deck
    card_ids = {rank: list(np.flatnonzero(deck.ranks_idx == rank)) for rank in range(13)}
    order = [card_ids[rank].pop() for rank in ranks]  # fails if ours dealt a card too many
    # POPGym deals from the end of deck.idx; the card on show was dealt at reset.
    deck.idx = np.array(order[::-1])
    deck.hands["player"] = [deck.idx[-1]]
    assert len(deck) == len(ranks) - 1


@pytest.mark.parametrize("level", LEVELS)
def test_higher_lower_steps_like_popgym(level: str) -> None:
    env_id = "HigherLower" + level
    env, _ = ours(env_id)
    for seed, policy in [(1, random_policy(2, 1)), (2, card_counter(env.num_decks))]:
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        first = int(first_obs)
        undealt = jnp.full((13,), 4 * env.num_decks, jnp.int32).at[first].add(-1)
        state = HigherLowerState(card=jnp.int32(first), undealt=undealt, time=jnp.int32(0))
        trace = play_ours(env_id, state, policy, seed)
        ranks = [int(np.argmax(obs)) for obs in trace.obs]
        stack_popgym_deck(reference, ranks)
        assert_same_trace(trace, play_popgym(reference, first_obs, replay(trace.actions)))
        # Both bets and ties (reward 0) were scored.
        assert {np.sign(r) for r in trace.reward} == {-1.0, 0.0, 1.0}


# ---------------------------------------------------------------------------------------------
# MultiarmedBandit: arms that always or never pay make the payouts the same draws on both sides.


def win_stay_lose_shift(num_bandits: int) -> Callable:
    arm = 0

    def policy(obs: np.ndarray, reward: float) -> int:
        nonlocal arm
        if reward < 0:
            arm = (arm + 1) % num_bandits
        return arm

    return policy


@pytest.mark.parametrize("level", LEVELS)
def test_multiarmed_bandit_steps_like_popgym_with_certain_arms(level: str) -> None:
    env_id = "MultiarmedBandit" + level
    env, _ = ours(env_id)
    rng = np.random.default_rng(3)
    arms = (rng.random(env.num_bandits) < 0.3).astype(np.float32)
    arms[:2] = [0.0, 1.0]  # arm 0 never pays, arm 1 always does
    policies = [
        lambda: random_policy(env.num_bandits, 4),
        lambda: win_stay_lose_shift(env.num_bandits),
    ]
    for seed, make_policy in enumerate(policies):
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        reference.bandits = arms.copy()
        state = MultiarmedBanditState(arms=jnp.asarray(arms), paid=jnp.int32(0), time=jnp.int32(0))
        trace = play_ours(env_id, state, make_policy(), seed)
        assert_same_trace(trace, play_popgym(reference, first_obs, make_policy()))
        assert {np.sign(r) for r in trace.reward} == {-1.0, 1.0}


# ---------------------------------------------------------------------------------------------
# Concentration: the same board on both sides, built for ours or dealt lazily by ours.


def memory_player(num_cards: int, num_kinds: int, seed: int) -> Callable:
    """Remembers every card it has seen. A turn plays a known pair if there is one, else an unseen
    card and then its known partner (or another unseen card). It never turns up a face-up card."""
    rng = np.random.default_rng(seed)
    known = np.full(num_cards, -1)  # kind seen at each position
    matched = np.zeros(num_cards, bool)
    turn: list[int] = []  # positions turned up in the current turn

    def policy(obs: np.ndarray, reward: float) -> int:
        board = np.argmax(obs.reshape(num_cards, num_kinds + 1), axis=1)
        known[board < num_kinds] = board[board < num_kinds]
        if len(turn) == 2:  # the last action ended a turn: start a new one
            matched[turn] |= reward > 0
            turn.clear()
        candidates = ~matched
        if turn:
            candidates[turn[0]] = False
            pool = np.flatnonzero(candidates & (known == known[turn[0]]))
        else:
            pairs = [k for k in range(num_kinds) if np.sum(candidates & (known == k)) >= 2]
            pool = np.flatnonzero(candidates & (known == pairs[0])) if pairs else []
        if not len(pool):
            pool = rng.permutation(np.flatnonzero(candidates & (known < 0)))
        action = int(pool[0])
        turn.append(action)
        return action

    return policy


def popgym_board(reference: gymnasium.Env) -> np.ndarray:
    """The kind of the card at each position of POPGym's board."""
    return reference.deck_idx_type[reference.deck.idx]


def lay_popgym_board(reference: gymnasium.Env, board: np.ndarray) -> None:
    """Rearranges POPGym's (reset) deck so that position i holds a card of kind board[i]."""
    card_ids = {
        kind: list(np.flatnonzero(reference.deck_idx_type == kind)) for kind in np.unique(board)
    }
    reference.deck.idx = np.array([card_ids[kind].pop() for kind in board])
    reference.state = board.copy()
    np.testing.assert_array_equal(popgym_board(reference), board)


def concentration_policies(env: Any, seed: int) -> list[Callable[[], Callable]]:
    return [
        lambda: random_policy(env.num_cards, seed),
        lambda: memory_player(env.num_cards, env.num_kinds, seed),
    ]


def reward_kinds(env: Any, rewards: list[float]) -> set[str]:
    """Which of POPGym's outcomes the rewards show (in units of -1 / episode_length but a pair)."""
    names = {0: "first card", 1: "first card already up", 2: "failed turn"}
    return {"pair" if r > 0 else names[round(-r * env.episode_length)] for r in np.asarray(rewards)}


@pytest.mark.parametrize("level", LEVELS)
def test_concentration_steps_like_popgym_on_a_given_board(level: str) -> None:
    env_id = "Concentration" + level
    env, _ = ours(env_id)
    outcomes = set()
    for seed, make_policy in enumerate(concentration_policies(env, seed=6)):
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        board = popgym_board(reference)
        state = ConcentrationState(
            board=jnp.asarray(board, jnp.int32),
            undealt=jnp.zeros((env.num_kinds,), jnp.int32),
            face_up=jnp.zeros((env.num_cards,), bool),
            first=jnp.int32(-1),
            shown=jnp.full((2,), -1, jnp.int32),
            time=jnp.int32(0),
        )
        trace = play_ours(env_id, state, make_policy(), seed)
        assert_same_trace(trace, play_popgym(reference, first_obs, make_policy()))
        outcomes |= reward_kinds(env, trace.reward)
        # Random play runs out of time; the memory player clears the board before then.
        assert (trace.terminated[-1], trace.truncated[-1]) == (seed == 1, seed == 0)
    assert outcomes == {"first card", "first card already up", "failed turn", "pair"}


@pytest.mark.parametrize("level", LEVELS)
def test_concentration_deals_lazily_a_board_popgym_replays(level: str) -> None:
    env_id = "Concentration" + level
    env, params = ours(env_id)
    per_kind = env.num_cards // env.num_kinds
    for seed, make_policy in enumerate(concentration_policies(env, seed=7)):
        _, state = env.reset(jax.random.key(seed), params)
        trace = play_ours(env_id, state, make_policy(), seed)
        # The board as ours revealed it; a position must show the same card every time.
        board = np.full(env.num_cards, -1)
        for obs in trace.obs:
            shown = np.argmax(obs.reshape(env.num_cards, env.num_kinds + 1), axis=1)
            visible = shown < env.num_kinds
            assert np.all((board[visible] < 0) | (board[visible] == shown[visible]))
            board[visible] = shown[visible]
        seen = np.bincount(board[board >= 0], minlength=env.num_kinds)
        assert np.all(seen <= per_kind)
        board[board < 0] = np.repeat(np.arange(env.num_kinds), per_kind - seen)
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        lay_popgym_board(reference, board)
        assert_same_trace(trace, play_popgym(reference, first_obs, replay(trace.actions)))
        assert (trace.terminated[-1], trace.truncated[-1]) == (seed == 1, seed == 0)


# ---------------------------------------------------------------------------------------------
# Return distributions where the draws are random on both sides.


def our_returns(env_id: str, policy: Callable, num_episodes: int, seed: int) -> np.ndarray:
    """One episode per lane, vmapped: ``policy(key, obs, prev_action, prev_reward)``."""
    env, params = ours(env_id)

    def episode(key: jax.Array) -> jax.Array:
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def one_step(carry, key):
            obs, state, action, reward, running = carry
            policy_key, step_key = jax.random.split(key)
            action = policy(policy_key, obs, action, reward)
            obs, state, reward, terminated, truncated, _ = env.step(step_key, state, action, params)
            reward_if_running = jnp.where(running, reward, 0.0)
            running = running & ~(terminated | truncated)
            return (obs, state, action, reward, running), reward_if_running

        carry = (obs, state, jnp.int32(0), jnp.float32(0.0), jnp.bool_(True))
        keys = jax.random.split(key, env.episode_length)
        _, rewards = jax.lax.scan(one_step, carry, keys)
        return rewards.sum()

    keys = jax.random.split(jax.random.key(seed), num_episodes)
    return np.asarray(jax.jit(jax.vmap(episode))(keys))


def popgym_returns(env_id: str, policy: Callable, num_episodes: int, seed: int) -> np.ndarray:
    """``policy(rng, obs, prev_action, prev_reward)`` on POPGym's observations (integers)."""
    return popgym_episode_returns(popgym_env(env_id), policy, num_episodes, seed)


def popgym_episode_returns(reference, policy: Callable, num_episodes: int, seed: int) -> np.ndarray:
    """Returns of ``policy`` in POPGym's env ``reference``, episode i reset with seed + i."""
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(num_episodes):
        obs, _ = reference.reset(seed=seed + episode)
        action, reward, episode_return, done = 0, 0.0, 0.0, False
        while not done:
            action = policy(rng, obs, action, reward)
            obs, reward, terminated, truncated, _ = reference.step(action)
            episode_return += reward
            done = terminated or truncated
        returns.append(episode_return)
    return np.array(returns)


def assert_same_law(ours_sample: np.ndarray, popgym_sample: np.ndarray) -> None:
    # Means: two independent samples, so the difference has standard error sqrt(s1^2/n1 +
    # s2^2/n2); 5 of them are exceeded by chance with probability < 1e-6 (central limit).
    standard_error = math.sqrt(
        ours_sample.var(ddof=1) / ours_sample.size + popgym_sample.var(ddof=1) / popgym_sample.size
    )
    assert abs(ours_sample.mean() - popgym_sample.mean()) < 5 * standard_error
    # The whole distribution: a two-sample Kolmogorov-Smirnov test at level 1e-4. Returns lie on
    # a lattice (multiples of 1 / 600 at the finest), which only makes the test conservative once
    # float32's rounding is taken off: else 0.5000002 and 0.5 would count as different returns.
    ours_sample, popgym_sample = (np.round(np.float64(x), 4) for x in (ours_sample, popgym_sample))
    assert scipy.stats.ks_2samp(ours_sample, popgym_sample).pvalue > 1e-4


def jax_random(num_actions: int) -> Callable:
    return lambda key, obs, action, reward: jax.random.randint(key, (), 0, num_actions)


def numpy_random(num_actions: int) -> Callable:
    return lambda rng, obs, action, reward: int(rng.integers(num_actions))


# (env id, our policy, POPGym's policy): the same rule on each side's observations.
LAWS = {
    "bandit-random": (
        "MultiarmedBanditEasy",
        jax_random(10),
        numpy_random(10),
    ),
    "bandit-win-stay-lose-shift": (
        "MultiarmedBanditEasy",
        lambda key, obs, action, reward: jnp.where(reward < 0, (action + 1) % 10, action),
        lambda rng, obs, action, reward: (action + 1) % 10 if reward < 0 else action,
    ),
    # Memoryless best bet: higher below a 7 (rank index 6), lower from it on.
    "higher-lower-threshold": (
        "HigherLowerEasy",
        lambda key, obs, action, reward: jnp.where(jnp.argmax(obs) < 6, 0, 1),
        lambda rng, obs, action, reward: 0 if obs < 6 else 1,
    ),
    "concentration-random": (
        "ConcentrationEasy",
        jax_random(52),
        numpy_random(52),
    ),
}


@pytest.mark.parametrize("law", LAWS)
def test_return_distributions_equal_popgyms(law: str) -> None:
    env_id, our_policy, popgym_policy = LAWS[law]
    ours_sample = our_returns(env_id, our_policy, num_episodes=2000, seed=8)
    popgym_sample = popgym_returns(env_id, popgym_policy, num_episodes=400, seed=9)
    assert_same_law(ours_sample, popgym_sample)
    assert ours_sample.std() > 0


# ---------------------------------------------------------------------------------------------
# Training conditions: vmap + jit, auto-reset, episode statistics.


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vmapped_auto_reset_keeps_returns_in_popgyms_range(env_id: str) -> None:
    env, params = ours(env_id)
    env = EpisodeStatistics(env)
    num_envs, num_steps = 4, 2 * env.episode_length + 7
    num_actions = env.action_space(params).n

    def run(key: jax.Array) -> dict[str, jax.Array]:
        reset_keys = jax.random.split(key, num_envs)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)

        def one_step(state, key):
            action_key, step_key = jax.random.split(key)
            actions = jax.random.randint(action_key, (num_envs,), 0, num_actions)
            step_keys = jax.random.split(step_key, num_envs)
            obs, state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(step_keys, state, actions, params)
            return state, (obs, info["returned_episode"], info["returned_episode_returns"])

        _, (obs, ended, returns) = jax.lax.scan(one_step, state, jax.random.split(key, num_steps))
        return obs, ended, returns

    obs, ended, returns = jax.jit(run)(jax.random.key(10))
    ended, returns = np.asarray(ended), np.asarray(returns)
    assert obs.shape == (num_steps, num_envs, *env.observation_space(params).shape)
    assert (ended.sum(axis=0) >= 2).all()  # every lane ran at least two whole episodes
    assert np.all(np.abs(returns[ended]) <= 1.0 + 1e-5)


def test_registry_names_and_settings() -> None:
    assert set(ENV_IDS) <= set(POPGYM_GAMES)  # Battleship and MineSweeper: test_popgym_boards
    settings = {
        "HigherLower": [dict(num_decks=1), dict(num_decks=2), dict(num_decks=3)],
        "MultiarmedBandit": [
            dict(num_bandits=10, episode_length=200),
            dict(num_bandits=20, episode_length=400),
            dict(num_bandits=30, episode_length=600),
        ],
        "Concentration": [
            dict(num_decks=1, attribute="colors"),
            dict(num_decks=2, attribute="colors"),
            dict(num_decks=1, attribute="ranks"),
        ],
    }
    for family, per_level in settings.items():
        for level, expected in zip(LEVELS, per_level, strict=True):
            env, _ = ours(family + level)
            assert env.name == family + level
            assert {name: getattr(env, name) for name in expected} == expected
    with pytest.raises(ValueError, match="odd number"):
        make("ConcentrationEasy", attribute="suits")
    env, params = make("MultiarmedBanditEasy", max_steps_in_episode=50)
    assert params.max_steps_in_episode == 50 and env.episode_length == 200
