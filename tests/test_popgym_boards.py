"""Battleship and MineSweeper against POPGym's own numpy envs (popgym 1.0.7).

Step for step: both envs are put into the same hidden layout (POPGym's ships or mines given to
ours, and ours given to POPGym), play the same actions (random, a player that uses only what it
observed, and scripted sequences that reach every reward and every way an episode ends) and must
give the same observations, rewards, terminations and truncations. Where the layout is drawn at
random on each side, its law must match POPGym's: per-square occupancy of each ship, mine layouts
against the uniform law POPGym's draw has, and the returns of a random policy.

Deliberate differences from POPGym, everywhere else equal:

- actions are flat, ``row * board_size + column``; POPGym's MultiDiscrete (row, column) is
  ``divmod(action, board_size)`` (``popgym_action``);
- observations are one-hot; POPGym's integers are one-hot encoded here (``one_hot``) to compare;
- our layouts are drawn with other random numbers (Battleship: many placements at once, keeping
  the first that fits; MineSweeper: Floyd's algorithm), so only their laws are compared.

Battleship's returns are POPGym's, which are not all in [-1, 1]: an episode of misses returns
-L / (L - H) (checked below), where L = board_size^2 steps and H = 12 ship squares.
"""

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from popgym.envs import battleship as popgym_battleship
from popgym.envs import minesweeper as popgym_minesweeper

from memorax.environments import POPGYM_GAMES, EpisodeStatistics, make
from memorax.environments.battleship import BattleshipState
from memorax.environments.minesweeper import MineSweeperState
from tests.test_popgym_reference import (
    LEVELS,
    Trace,
    assert_same_law,
    assert_same_trace,
    family,
    one_hot,
    our_returns,
    ours,
    play_ours,
    popgym_episode_returns,
    random_policy,
    replay,
)

POPGYM_MODULES = {"Battleship": popgym_battleship, "MineSweeper": popgym_minesweeper}
ENV_IDS = [family + level for family in POPGYM_MODULES for level in LEVELS]


def popgym_env(env_id: str) -> gymnasium.Env:
    return getattr(POPGYM_MODULES[family(env_id)], env_id)()


def popgym_action(action: int, board_size: int) -> np.ndarray:
    """Our flat action as POPGym's (row, column)."""
    return np.array(divmod(action, board_size))


def play_popgym(reference: gymnasium.Env, first_obs: int, policy: Callable) -> Trace:
    """Like test_popgym_reference's, with our flat actions turned into POPGym's (row, column)."""
    board_size = int(reference.action_space.nvec[0])
    trace = Trace(one_hot(reference.observation_space, first_obs))
    reward = 0.0
    while not trace.done:
        action = policy(trace.obs[-1], reward)
        obs, reward, terminated, truncated, _ = reference.step(popgym_action(action, board_size))
        trace.add(action, one_hot(reference.observation_space, obs), reward, terminated, truncated)
    return trace


def neighbours(square: int, board_size: int) -> list[int]:
    row, column = divmod(square, board_size)
    return [
        r * board_size + c
        for r, c in itertools.product(range(row - 1, row + 2), range(column - 1, column + 2))
        if 0 <= r < board_size and 0 <= c < board_size and (r, c) != (row, column)
    ]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_episode_lengths_equal_popgyms(env_id: str) -> None:
    env, params = ours(env_id)
    reference = popgym_env(env_id)
    assert env.action_space(params).n == np.prod(reference.action_space.nvec)
    assert env.observation_space(params).shape == (reference.observation_space.n,)
    # Firing at (clicking) one safe square over and over runs POPGym's episode to its time limit.
    obs, _ = reference.reset(seed=0)
    hidden = reference.board if family(env_id) == "Battleship" else reference.hidden_grid
    safe = int(np.flatnonzero(hidden.ravel() == 0)[0])
    trace = play_popgym(reference, obs, lambda obs, reward: safe)
    assert env.episode_length == params.max_steps_in_episode == len(trace.actions)
    assert trace.truncated[-1] and not trace.terminated[-1]
    assert not any(trace.terminated[:-1] + trace.truncated[:-1])


# ---------------------------------------------------------------------------------------------
# Battleship


def record_popgym_ships(reference: gymnasium.Env, seed: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Resets POPGym, noting where each ship went: (first obs, bow [ships, 2], vertical [ships])."""
    bows, verticals = [], []
    place_ship = functools.partial(popgym_battleship.Battleship.place_ship, reference)

    def recording_place_ship(board, ship_size):
        before = board.copy()
        board = place_ship(board, ship_size)
        squares = np.argwhere(board != before)  # [ship_size, 2], row-major: the bow first
        bows.append(squares[0])
        verticals.append(bool(squares[0, 1] == squares[-1, 1]))
        return board

    reference.place_ship = recording_place_ship
    obs, _ = reference.reset(seed=seed)
    return obs, np.array(bows), np.array(verticals)


def battleship_state(env: Any, bow: np.ndarray, vertical: np.ndarray) -> BattleshipState:
    return BattleshipState(
        bow=jnp.asarray(bow, jnp.int32),
        vertical=jnp.asarray(vertical),
        hit=jnp.zeros((len(env.ship_sizes), max(env.ship_sizes)), bool),
        last_hit=jnp.int32(0),
        time=jnp.int32(0),
    )


def hunter(board_size: int, seed: int) -> Callable:
    """Fires at untried squares of one colour of a checkerboard in random order; after a hit,
    at the hit square's untried neighbours first. It remembers every shot (needs memory)."""
    rng = np.random.default_rng(seed)
    squares = np.arange(board_size**2)
    colour = (squares // board_size + squares % board_size) % 2
    order = [*rng.permutation(squares[colour == 0]), *rng.permutation(squares[colour == 1])]
    tried = np.zeros(board_size**2, bool)
    targets: list[int] = []
    last = None

    def policy(obs: np.ndarray, reward: float) -> int:
        nonlocal last
        if last is not None and obs[1] == 1:  # the last shot hit
            row, column = divmod(last, board_size)
            for r, c in (
                (row - 1, column),
                (row + 1, column),
                (row, column - 1),
                (row, column + 1),
            ):
                if 0 <= r < board_size and 0 <= c < board_size:
                    targets.append(r * board_size + c)
        while targets and tried[targets[-1]]:
            targets.pop()
        last = targets.pop() if targets else next(s for s in order if not tried[s])
        tried[last] = True
        return int(last)

    return policy


def battleship_scripts(env: Any, board: np.ndarray) -> dict[str, list[int]]:
    """Action sequences that need the layout: they reach the extreme returns and both ends."""
    ships = list(np.flatnonzero(board.ravel()))
    water = int(np.flatnonzero(~board.ravel())[0])
    misses = env.episode_length - env.needed_hits
    return {
        # Sinks the last ship at step L: POPGym reports terminated and truncated; return 0.
        "late_sinker": [water] * misses + ships,
        # Hits, fires at the same square again (a miss), then misses to the end.
        "double_tap": [ships[0], ships[0]] + [water] * (env.episode_length - 2),
        "sharpshooter": ships,  # return 1
        "all_miss": [water] * env.episode_length,  # return -L / (L - H) < -1
    }


def battleship_policies(env: Any, board: np.ndarray, seed: int) -> dict[str, Callable]:
    return {
        "random": lambda: random_policy(env.num_actions, seed),
        "hunter": lambda: hunter(env.board_size, seed),
        **{
            name: (lambda actions=actions: replay(actions))
            for name, actions in battleship_scripts(env, board).items()
        },
    }


def check_battleship_episode(env: Any, name: str, trace: Trace) -> None:
    """How each policy's episode must end, and its return where the policy fixes it."""
    ends = (trace.terminated[-1], trace.truncated[-1])
    episode_return = sum(trace.reward)
    length = env.episode_length
    if name in ("random", "double_tap", "all_miss"):
        assert ends == (False, True) and len(trace.actions) == length
    elif name == "late_sinker":
        assert ends == (True, True) and len(trace.actions) == length
        assert episode_return == pytest.approx(0.0, abs=1e-5)
    else:  # hunter, sharpshooter
        assert ends == (True, False) and len(trace.actions) < length
    if name == "sharpshooter":
        assert episode_return == pytest.approx(1.0, abs=1e-5)
    if name == "all_miss":
        assert episode_return == pytest.approx(-length / (length - env.needed_hits), abs=1e-5)
    if name == "double_tap":  # the second shot at a hit square is a miss
        assert np.sign(trace.reward[:2]).tolist() == [1.0, -1.0]


@pytest.mark.parametrize("level", LEVELS)
def test_battleship_steps_like_popgym_on_popgyms_layout(level: str) -> None:
    env_id = "Battleship" + level
    env, _ = ours(env_id)
    for seed, name in enumerate(("random", "hunter", "late_sinker", "double_tap")):
        reference = popgym_env(env_id)
        first_obs, bow, vertical = record_popgym_ships(reference, seed)
        state = battleship_state(env, bow, vertical)
        np.testing.assert_array_equal(env.board(state), reference.board.astype(bool))
        policy = battleship_policies(env, reference.board.astype(bool), seed)[name]
        trace = play_ours(env_id, state, policy(), seed)
        assert_same_trace(trace, play_popgym(reference, first_obs, policy()))
        check_battleship_episode(env, name, trace)


@pytest.mark.parametrize("level", LEVELS)
def test_battleship_steps_like_popgym_on_our_layout(level: str) -> None:
    env_id = "Battleship" + level
    env, params = ours(env_id)
    for seed, name in enumerate(("random", "hunter", "sharpshooter", "all_miss")):
        _, state = env.reset(jax.random.key(seed), params)
        board = np.asarray(env.board(state))
        assert board.sum() == env.needed_hits  # no two ships overlap
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        reference.board = board.astype(np.int8)
        policy = battleship_policies(env, board, seed)[name]
        trace = play_ours(env_id, state, policy(), seed)
        assert_same_trace(trace, play_popgym(reference, first_obs, policy()))
        check_battleship_episode(env, name, trace)


def test_battleship_layouts_have_popgyms_law() -> None:
    """Where each ship lies, ship by ship (later ships avoid earlier ones): per-square frequencies
    of 20,000 of our layouts against 8,000 of POPGym's (Easy). Under the same law each difference
    is about normal with the standard error below; 5 of them are exceeded by chance in one of the
    4 x 64 comparisons with probability < 2e-4."""
    env, params = ours("BattleshipEasy")
    num_ours, num_popgym, n = 20_000, 8_000, env.board_size
    keys = jax.random.split(jax.random.key(11), num_ours)
    _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)

    def ship_boards(bow: np.ndarray, vertical: np.ndarray) -> np.ndarray:
        """[layouts, ships, n, n]: the squares of each ship, one ship at a time."""
        one_ship = jax.jit(
            jax.vmap(_single_ship_board, in_axes=(None, 0, 0, None)), static_argnums=(0, 3)
        )
        return np.stack(
            [
                np.asarray(one_ship(n, bow[:, ship], vertical[:, ship], size))
                for ship, size in enumerate(env.ship_sizes)
            ],
            axis=1,
        )

    ours_boards = ship_boards(np.asarray(states.bow), np.asarray(states.vertical))
    reference = popgym_env("BattleshipEasy")
    recorded = [record_popgym_ships(reference, seed)[1:] for seed in range(num_popgym)]
    popgym_boards = ship_boards(
        np.array([bow for bow, _ in recorded]), np.array([vertical for _, vertical in recorded])
    )
    # Whole boards: ours never overlap, like POPGym's.
    assert (ours_boards.sum(axis=1) <= 1).all() and (popgym_boards.sum(axis=1) <= 1).all()
    p_ours, p_popgym = ours_boards.mean(axis=0), popgym_boards.mean(axis=0)  # [ships, n, n]
    standard_error = np.sqrt(
        p_ours * (1 - p_ours) / num_ours + p_popgym * (1 - p_popgym) / num_popgym
    )
    assert np.all(np.abs(p_ours - p_popgym) <= 5 * standard_error + 1e-12)
    # The test can tell: the corner is rarely covered, and less so by the longest ship.
    assert p_popgym[3, 0, 0] < 0.5 * p_popgym[3, 3, 3]


def _single_ship_board(n: int, bow: jax.Array, vertical: jax.Array, size: int) -> jax.Array:
    rows, columns = jnp.mgrid[:n, :n]
    along = jnp.where(vertical, rows - bow[0], columns - bow[1])
    across = jnp.where(vertical, columns - bow[1], rows - bow[0])
    return (across == 0) & (along >= 0) & (along < size)


# ---------------------------------------------------------------------------------------------
# MineSweeper


class GivenLayout:
    """Stands in for POPGym's random generator at reset: its draw of mines returns ours."""

    def __init__(self, mines: np.ndarray):
        self.mines = mines

    def choice(self, squares, size, replace):
        assert size == len(self.mines) and not replace
        return self.mines


def minesweeper_state(env: Any, mines: np.ndarray) -> MineSweeperState:
    return MineSweeperState(
        mines=jnp.asarray(mines, jnp.int32),
        clicked=jnp.zeros((env.board_size**2,), bool),
        num_clicked=jnp.int32(0),
        exploded=jnp.bool_(False),
        count=jnp.int32(0),
        time=jnp.int32(0),
    )


def deducer(board_size: int, seed: int) -> Callable:
    """Clicks squares that the counts it has seen prove safe, else a random square not proven to
    hold a mine; it never clicks a square twice (needs memory of every count and square)."""
    rng = np.random.default_rng(seed)
    counts: dict[int, int] = {}  # square clicked: mines around it
    last = None

    def policy(obs: np.ndarray, reward: float) -> int:
        nonlocal last
        if last is not None:
            counts[last] = int(np.argmax(obs))
        safe, mines = set(counts), set()
        changed = True
        while changed:
            changed = False
            for square, count in counts.items():
                around = neighbours(square, board_size)
                unknown = [s for s in around if s not in safe and s not in mines]
                known_mines = sum(s in mines for s in around)
                if unknown and count == known_mines:
                    safe.update(unknown)
                    changed = True
                elif unknown and count == known_mines + len(unknown):
                    mines.update(unknown)
                    changed = True
        proven = sorted(safe - set(counts))
        if proven:
            last = proven[0]
        else:
            unclicked = [s for s in range(board_size**2) if s not in counts and s not in mines]
            last = int(rng.choice(unclicked))
        return last

    return policy


def minesweeper_scripts(env: Any, mines: np.ndarray) -> dict[str, list[int]]:
    safe = [int(s) for s in range(env.board_size**2) if s not in set(mines.tolist())]
    repeats = env.episode_length - 2
    return {
        "sweeper": safe,  # clears the board: terminated at step L, return 1
        # One new square, L - 2 repeats, then a mine: the worst return, -1.
        "worst": [safe[0]] * (1 + repeats) + [int(mines[0])],
        # One repeat among new squares: the time limit comes one square short of clearing.
        "stutter": [safe[0]] + safe[:-2] + [safe[-2]],
    }


def minesweeper_policies(env: Any, mines: np.ndarray, seed: int) -> dict[str, Callable]:
    return {
        "random": lambda: random_policy(env.num_actions, seed),
        "deducer": lambda: deducer(env.board_size, seed),
        **{
            name: (lambda actions=actions: replay(actions))
            for name, actions in minesweeper_scripts(env, mines).items()
        },
    }


def minesweeper_outcomes(env: Any, trace: Trace) -> set[str]:
    names = {env.clear_reward: "clear", env.repeat_reward: "repeat", env.mine_reward: "mine"}
    outcomes = {names[min(names, key=lambda r: abs(r - reward))] for reward in trace.reward}
    ends = (trace.terminated[-1], trace.truncated[-1])
    if ends == (False, True):
        outcomes.add("time limit")
    elif trace.reward[-1] > 0:
        outcomes.add("board cleared")
    return outcomes


def check_minesweeper_episode(env: Any, name: str, trace: Trace) -> None:
    episode_return = sum(trace.reward)
    assert -1.0 - 1e-5 <= episode_return <= 1.0 + 1e-5
    if name == "sweeper":
        assert (trace.terminated[-1], trace.truncated[-1]) == (True, False)
        assert episode_return == pytest.approx(1.0, abs=1e-5)
    if name == "worst":
        assert (trace.terminated[-1], trace.truncated[-1]) == (True, False)
        assert episode_return == pytest.approx(-1.0, abs=1e-5)
    if name == "stutter":
        assert (trace.terminated[-1], trace.truncated[-1]) == (False, True)


@pytest.mark.parametrize("level", LEVELS)
def test_minesweeper_steps_like_popgym_on_popgyms_layout(level: str) -> None:
    env_id = "MineSweeper" + level
    env, _ = ours(env_id)
    outcomes = set()
    for seed, name in enumerate(("random", "deducer", "sweeper", "worst", "stutter")):
        reference = popgym_env(env_id)
        first_obs, _ = reference.reset(seed=seed)
        mines = np.flatnonzero(
            reference.hidden_grid.ravel() == popgym_minesweeper.HiddenSquare.MINE
        )
        state = minesweeper_state(env, mines)
        np.testing.assert_array_equal(env.board(state), reference.hidden_grid == 1)
        policy = minesweeper_policies(env, mines, seed)[name]
        trace = play_ours(env_id, state, policy(), seed)
        assert_same_trace(trace, play_popgym(reference, first_obs, policy()))
        check_minesweeper_episode(env, name, trace)
        outcomes |= minesweeper_outcomes(env, trace)
    assert outcomes == {"clear", "repeat", "mine", "time limit", "board cleared"}


@pytest.mark.parametrize("level", LEVELS)
def test_minesweeper_steps_like_popgym_on_our_layout(level: str) -> None:
    env_id = "MineSweeper" + level
    env, params = ours(env_id)
    for seed, name in enumerate(("random", "deducer", "sweeper", "worst", "stutter")):
        _, state = env.reset(jax.random.key(seed), params)
        mines = np.asarray(state.mines)
        assert len(set(mines.tolist())) == env.num_mines  # distinct squares
        reference = popgym_env(env_id)
        reference.reset(seed=seed)
        reference.np_random = GivenLayout(mines)
        first_obs, _ = reference.reset()  # POPGym lays our mines and counts their neighbours
        np.testing.assert_array_equal(env.board(state), reference.hidden_grid == 1)
        policy = minesweeper_policies(env, mines, seed)[name]
        trace = play_ours(env_id, state, policy(), seed)
        assert_same_trace(trace, play_popgym(reference, first_obs, policy()))
        check_minesweeper_episode(env, name, trace)


def test_mine_layouts_are_uniform_like_popgyms() -> None:
    """POPGym draws its mines with numpy's choice without replacement: every set of squares is
    equally likely. Easy has C(16, 2) = 120 sets: 12,000 of our layouts and 3,000 of POPGym's,
    each against that uniform law, by a chi-square test at level 1e-4. Hard: each square holds a
    mine with probability 10 / 64 (binomial, 5 standard errors per square)."""
    for env_id, num_layouts in (("MineSweeperEasy", 12_000), ("MineSweeperHard", 4_000)):
        env, params = ours(env_id)
        keys = jax.random.split(jax.random.key(12), num_layouts)
        _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
        mines = np.sort(np.asarray(states.mines), axis=1)
        assert (np.diff(mines, axis=1) > 0).all() and mines.min() >= 0
        num_squares = env.board_size**2
        frequency = np.bincount(mines.ravel(), minlength=num_squares) / num_layouts
        p = env.num_mines / num_squares
        assert np.all(np.abs(frequency - p) <= 5 * math.sqrt(p * (1 - p) / num_layouts))
        if env_id != "MineSweeperEasy":
            continue
        layouts = list(itertools.combinations(range(num_squares), env.num_mines))
        index = {layout: i for i, layout in enumerate(layouts)}
        reference = popgym_env(env_id)
        popgym_mines = []
        for seed in range(3_000):
            reference.reset(seed=seed)
            popgym_mines.append(tuple(np.flatnonzero(reference.hidden_grid.ravel() == 1)))
        for sample in (map(tuple, mines.tolist()), popgym_mines):
            counts = np.bincount([index[layout] for layout in sample], minlength=len(layouts))
            assert scipy.stats.chisquare(counts).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# Random play: returns, and training conditions (vmap + jit, auto-reset, episode statistics).


def popgym_returns(env_id: str, num_episodes: int, seed: int) -> np.ndarray:
    """Returns of uniformly random actions in POPGym's env."""
    reference = popgym_env(env_id)
    nvec = reference.action_space.nvec

    def policy(rng, *_):
        return np.array([int(rng.integers(n)) for n in nvec])

    return popgym_episode_returns(reference, policy, num_episodes, seed)


@pytest.mark.parametrize("env_id", ["BattleshipEasy", "MineSweeperEasy"])
def test_random_play_returns_have_popgyms_law(env_id: str) -> None:
    env, _ = ours(env_id)
    num_actions = env.num_actions
    ours_sample = our_returns(
        env_id,
        lambda key, obs, action, reward: jax.random.randint(key, (), 0, num_actions),
        num_episodes=2000,
        seed=13,
    )
    popgym_sample = popgym_returns(env_id, num_episodes=400, seed=14)
    assert_same_law(ours_sample, popgym_sample)
    assert ours_sample.std() > 0


# One level per family: each compiles its own scan, and the levels differ only in sizes.
@pytest.mark.parametrize("env_id", ["BattleshipEasy", "MineSweeperHard"])
def test_vmapped_auto_reset_keeps_returns_in_popgyms_range(env_id: str) -> None:
    env, params = ours(env_id)
    env = EpisodeStatistics(env)
    num_envs, num_steps = 4, 2 * env.episode_length + 7

    def run(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        reset_keys = jax.random.split(key, num_envs)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)

        def one_step(state, key):
            action_key, step_key = jax.random.split(key)
            actions = jax.random.randint(action_key, (num_envs,), 0, env.num_actions)
            step_keys = jax.random.split(step_key, num_envs)
            _, state, _, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                step_keys, state, actions, params
            )
            return state, (info["returned_episode"], info["returned_episode_returns"])

        _, out = jax.lax.scan(one_step, state, jax.random.split(key, num_steps))
        return out

    ended, returns = (np.asarray(x) for x in jax.jit(run)(jax.random.key(15)))
    assert (ended.sum(axis=0) >= 2).all()  # every lane ran at least two whole episodes
    lowest = -1.0  # Battleship: an episode of misses returns -L / (L - H), its lowest
    if family(env_id) == "Battleship":
        lowest = -env.episode_length / (env.episode_length - env.needed_hits)
    assert np.all((returns[ended] >= lowest - 1e-5) & (returns[ended] <= 1.0 + 1e-5))


def test_registry_names_and_settings() -> None:
    assert set(ENV_IDS) <= set(POPGYM_GAMES)
    settings = {
        "Battleship": [dict(board_size=s, ship_sizes=(2, 3, 3, 4)) for s in (8, 10, 12)],
        "MineSweeper": [
            dict(board_size=4, num_mines=2),
            dict(board_size=6, num_mines=6),
            dict(board_size=8, num_mines=10),
        ],
    }
    for family_name, per_level in settings.items():
        reference_dims = []
        for level, expected in zip(LEVELS, per_level, strict=True):
            env, _ = ours(family_name + level)
            assert env.name == family_name + level
            assert {name: getattr(env, name) for name in expected} == expected
            reference = popgym_env(family_name + level)
            reference_dims.append(tuple(reference.action_space.nvec))
            assert reference_dims[-1] == (env.board_size, env.board_size)
        if family_name == "Battleship":
            assert reference.ship_sizes == [2, 3, 3, 4]
        else:
            assert reference.num_mines == env.num_mines
    with pytest.raises(ValueError, match="may not fit"):
        make("BattleshipEasy", board_size=4)
    with pytest.raises(ValueError, match="ship_sizes"):
        make("BattleshipEasy", ship_sizes=(2, 9))
    with pytest.raises(ValueError, match="num_mines"):
        make("MineSweeperEasy", num_mines=14)
    env, params = make("MineSweeperHard", max_steps_in_episode=5)
    assert params.max_steps_in_episode == 5 and env.episode_length == 54
