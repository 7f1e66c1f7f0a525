"""LabyrinthEscape and LabyrinthExplore against POPGym's own numpy envs (popgym 1.0.7).

POPGym draws its mazes with mazelib, an optional dependency that is not installed here, so a
stand-in ``mazelib`` module is put in ``sys.modules`` before POPGym's maze module is imported. It
serves POPGym either a maze we choose (then both envs start in the same hidden state: the same
maze, start and exit) or one drawn by ``reference_hunt_and_kill``, our plain transcription of
mazelib's algorithm (hunt-and-kill with random hunting and a budget of one pick per square, then
outer entrances on opposite sides), drawn with Python's ``random`` as mazelib does.

- Step for step: the same maze, start and exit on both sides, the same actions (random, a scripted
  shortest path or depth-first tour with a bump into the wall at the start, and one that idles
  until it can reach the exit exactly on the last step); observations (POPGym's MultiDiscrete
  one-hot encoded here), rewards, terminations and truncations must be equal. Every start side
  is played, so POPGym's view at the top and left edges (sliced from the edge, padded below and
  to the right) is checked.
- The maze law, which cannot be matched draw for draw: our mazes (from ``reset`` and from the
  auto-reset's amortised carving) are perfect mazes of POPGym's size with entrances where
  mazelib puts them, and their dead ends and start-to-exit path lengths have the law of the
  reference generator's; a short pick budget checks our geometric hunting against mazelib's
  pick-by-pick hunting.
- Random play's returns have the same law in both envs (POPGym on the reference generator).

Deliberate differences from POPGym, named here and in memorax/environments/labyrinth.py: our
mazes come from our own random numbers (same law, not the same draws), and a non-square maze's
view is bounded by its width (POPGym uses the height; POPGym's mazes are all square).
"""

import functools
import random
import sys
import types
from collections import deque
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from memorax.environments import POPGYM_GAMES, EpisodeStatistics, make
from memorax.environments import maze as mazes
from memorax.environments.labyrinth import LabyrinthState
from tests.test_popgym_reference import (
    Trace,
    assert_same_law,
    assert_same_trace,
    popgym_episode_returns,
)

LEVELS = ("Easy", "Medium", "Hard")
FAMILIES = ("LabyrinthEscape", "LabyrinthExplore")
ENV_IDS = [family + level for family in FAMILIES for level in LEVELS]
CELLS_A_SIDE = {"Easy": 5, "Medium": 7, "Hard": 9}
FREE, WALL, START, EXIT = 0, 1, 2, 3
MOVES = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # POPGym's left, right, up, down
SIDES = ("north", "south", "west", "east")
EPISODE_LENGTH = 1023  # POPGym truncates on step max_episode_length - 1
OUTWARD = {"north": 2, "south": 3, "west": 0, "east": 1}  # off the grid from a start on that side
OPPOSITE = {"north": "south", "south": "north", "west": "east", "east": "west"}


# ---------------------------------------------------------------------------------------------
# The reference maze generator and the stand-in mazelib.


def reference_hunt_and_kill(num_rows: int, num_cols: int, picks_budget: int | None = None):
    """mazelib's hunt-and-kill with random hunting, on Python's global ``random``: [H, W] int8,
    1 = wall, 0 = open."""
    rows, cols = 2 * num_rows + 1, 2 * num_cols + 1
    picks_budget = rows * cols if picks_budget is None else picks_budget
    grid = np.ones((rows, cols), np.int8)

    def unvisited_neighbours(r: int, c: int) -> list[tuple[int, int]]:
        steps = ((-2, 0), (2, 0), (0, -2), (0, 2))
        return [
            (r + dr, c + dc)
            for dr, dc in steps
            if 0 < r + dr < rows and 0 < c + dc < cols and grid[r + dr, c + dc] == 1
        ]

    r, c = random.randrange(1, rows, 2), random.randrange(1, cols, 2)
    grid[r, c] = 0
    picks = 0
    while True:
        if grid[r, c] == 0:  # walk from a visited cell until stuck
            options = unvisited_neighbours(r, c)
            while options:
                next_r, next_c = random.choice(options)
                grid[next_r, next_c] = grid[(r + next_r) // 2, (c + next_c) // 2] = 0
                r, c = next_r, next_c
                options = unvisited_neighbours(r, c)
        if picks == picks_budget:
            return grid
        r, c = random.randrange(1, rows, 2), random.randrange(1, cols, 2)
        picks += 1


def reference_entrances(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """mazelib's outer entrances: start on a uniform side, end on the opposite one."""
    side = random.randrange(4)
    if side < 2:
        start_col, end_col = random.randrange(1, cols, 2), random.randrange(1, cols, 2)
        top, bottom = (0, start_col), (rows - 1, end_col)
        return (top, bottom) if side == 0 else ((rows - 1, start_col), (0, end_col))
    start_row, end_row = random.randrange(1, rows, 2), random.randrange(1, rows, 2)
    return (
        ((start_row, 0), (end_row, cols - 1))
        if side == 2
        else (
            (start_row, cols - 1),
            (end_row, 0),
        )
    )


class StandInMaze:
    """mazelib.Maze as popgym.core.maze uses it. ``planned`` holds (grid, start, end) to serve
    next; when it is empty, mazes come from the reference generator."""

    planned: list[tuple[np.ndarray, tuple[int, int], tuple[int, int]]] = []

    def __init__(self):
        self.generator = self.grid = self.start = self.end = None
        self._entrances = None

    def generate(self) -> None:
        if StandInMaze.planned:
            self.grid, *self._entrances = StandInMaze.planned.pop(0)
        else:
            self.grid = reference_hunt_and_kill(self.generator.num_rows, self.generator.num_cols)
            self._entrances = None

    def generate_entrances(self, start_outer: bool = True, end_outer: bool = True) -> None:
        assert start_outer and end_outer  # POPGym asks for both on the outer wall
        self.start, self.end = self._entrances or reference_entrances(*self.grid.shape)


class StandInHuntAndKill:
    def __init__(self, num_rows: int, num_cols: int):
        self.num_rows, self.num_cols = num_rows, num_cols


def _install_stand_in_mazelib() -> None:
    package = types.ModuleType("mazelib")
    package.Maze = StandInMaze
    generate = types.ModuleType("mazelib.generate")
    hunt_and_kill = types.ModuleType("mazelib.generate.HuntAndKill")
    hunt_and_kill.HuntAndKill = StandInHuntAndKill
    for module in (package, generate, hunt_and_kill):
        sys.modules.setdefault(module.__name__, module)


_install_stand_in_mazelib()
from popgym.envs import labyrinth_escape, labyrinth_explore  # noqa: E402

POPGYM_MODULES = {"LabyrinthEscape": labyrinth_escape, "LabyrinthExplore": labyrinth_explore}


def popgym_env(env_id: str):
    family = env_id.removesuffix(level_of(env_id))
    with pytest.warns(DeprecationWarning, match="solvable without the use of memory"):
        return getattr(POPGYM_MODULES[family], env_id)()


def level_of(env_id: str) -> str:
    return next(level for level in LEVELS if env_id.endswith(level))


# ---------------------------------------------------------------------------------------------
# Mazes as numpy grids: open squares, entrances, paths.


@functools.cache
def ours(env_id: str, **kwargs) -> tuple[Any, Any]:
    """One env per id (and settings) for the whole file, so that its jitted calls compile once."""
    return make(env_id, **kwargs)


@functools.cache
def our_mazes(env_id: str, num_mazes: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_mazes`` first states of our env: the grids [n, H, W] and positions [n, 2]."""
    env, params = ours(env_id)
    keys = jax.random.split(jax.random.key(seed), num_mazes)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    return np.asarray(state.grid), np.asarray(state.position)


def neighbours(grid: np.ndarray, square: tuple[int, int]):
    rows, cols = grid.shape
    for action, (dr, dc) in MOVES.items():
        r, c = square[0] + dr, square[1] + dc
        if 0 <= r < rows and 0 <= c < cols and grid[r, c] != WALL:
            yield action, (r, c)


def distances(grid: np.ndarray, source: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Breadth-first distance from ``source`` to every square reachable through non-walls."""
    seen, queue = {source: 0}, deque([source])
    while queue:
        square = queue.popleft()
        for _, nxt in neighbours(grid, square):
            if nxt not in seen:
                seen[nxt] = seen[square] + 1
                queue.append(nxt)
    return seen


def assert_perfect_maze(open_squares: np.ndarray, num_rows: int, num_cols: int) -> None:
    """The open squares are every cell and cells - 1 passages between neighbouring cells, all
    connected: a spanning tree of the cells."""
    assert open_squares.shape == (2 * num_rows + 1, 2 * num_cols + 1)
    assert open_squares[1::2, 1::2].all()  # every cell
    assert not open_squares[::2, ::2].any()  # no pillar, no border corner
    assert not (open_squares[0].any() or open_squares[-1].any())
    assert not (open_squares[:, 0].any() or open_squares[:, -1].any())
    num_cells = num_rows * num_cols
    assert open_squares.sum() == 2 * num_cells - 1  # cells - 1 passages: a tree if connected
    grid = np.where(open_squares, FREE, WALL)
    assert len(distances(grid, (1, 1))) == 2 * num_cells - 1


def entrance_side(square: tuple[int, int], rows: int, cols: int) -> str:
    r, c = square
    return "north" if r == 0 else "south" if r == rows - 1 else "west" if c == 0 else "east"


def maze_statistics(open_squares: np.ndarray, start, end) -> tuple[int, int]:
    """(dead-end cells, start-to-exit path length): the first tells hunt-and-kill's long
    corridors from other generators' branching, the second is what escaping takes."""
    cells = open_squares[1::2, 1::2]
    padded = np.pad(open_squares, 1)
    degree = sum(
        padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc][1::2, 1::2]
        for dr, dc in MOVES.values()
    )
    grid = np.where(open_squares, FREE, WALL)
    grid[tuple(start)] = grid[tuple(end)] = FREE
    return int(((degree == 1) & cells).sum()), distances(grid, tuple(start)).get(tuple(end), -1)


def the_exit(grid: np.ndarray) -> tuple[int, int] | None:
    found = np.argwhere(grid == EXIT)
    return tuple(int(x) for x in found[0]) if len(found) else None


def mazelib_grid(grid: np.ndarray) -> np.ndarray:
    """Our grid as mazelib hands it to POPGym: 0 open, 1 wall, the entrances still wall."""
    return np.where(grid == FREE, 0, 1).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# Spaces, lengths, registry.


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_episode_lengths_equal_popgyms(env_id: str) -> None:
    env, params = ours(env_id)
    reference = popgym_env(env_id)
    assert env.action_space(params).n == reference.action_space.n == 4
    assert env.observation_space(params).shape == (int(np.sum(reference.observation_space.nvec)),)
    # POPGym's step cost and time limit: an agent that only bumps into the wall at the start
    # (moving off the grid) is truncated on step max_episode_length - 1.
    assert env.max_episode_length == reference.max_episode_length == 1024
    assert reference.maze_dims == [CELLS_A_SIDE[level_of(env_id)]] * 2
    reference.reset(seed=0)  # a reference maze
    grid_shape = reference.maze.grid.shape
    outward = OUTWARD[entrance_side(reference.maze.start, *grid_shape)]
    assert grid_shape == (2 * reference.maze_dims[0] + 1,) * 2
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = reference.step(outward)
        steps, done = steps + 1, terminated or truncated
        assert reward == pytest.approx(-1 / 1024)
    assert (terminated, truncated) == (False, True)
    assert steps == env.episode_length == params.max_steps_in_episode == EPISODE_LENGTH


def test_registry_names_and_settings() -> None:
    assert set(ENV_IDS) <= set(POPGYM_GAMES)
    for env_id in ENV_IDS:
        env, _ = ours(env_id)
        assert env.name == env_id
        cells = CELLS_A_SIDE[level_of(env_id)]
        assert (env.num_rows, env.num_cols) == (cells, cells)
    with pytest.raises(ValueError, match="must be even"):
        make("LabyrinthEscapeEasy", maze_dims=(9, 10))
    with pytest.raises(ValueError, match="LabyrinthExplore has no difficulty 'Extreme'"):
        make("LabyrinthExploreExtreme")


# ---------------------------------------------------------------------------------------------
# Step for step in the same hidden state.


def our_state(env, grid: np.ndarray, start: tuple[int, int]) -> LabyrinthState:
    """Our env's first state in ``grid`` (POPGym's square kinds), the agent on ``start``."""
    visited = np.zeros(grid.shape, bool)
    visited[start] = True
    return LabyrinthState(
        grid=jnp.asarray(grid, jnp.int32),
        position=jnp.asarray(start, jnp.int32),
        visited=jnp.asarray(visited),
        last_action=jnp.int32(4),
        next_maze=mazes.start(jnp.array([0.5, 0.5]), env.num_rows, env.num_cols),
        time=jnp.int32(0),
    )


def play_ours(env_id: str, states: LabyrinthState, actions: np.ndarray) -> list[Trace]:
    """Plays each row of ``actions`` [episodes, steps] from the matching state, to the end of its
    episode (the auto-reset's final observation is the episode's last)."""
    env, params = ours(env_id)

    def episode(state: LabyrinthState, actions: jax.Array, key: jax.Array):
        def one_step(state, inputs):
            action, key = inputs
            _, state, reward, terminated, truncated, info = env.step(key, state, action, params)
            return state, (info["final_observation"], reward, terminated, truncated)

        keys = jax.random.split(key, actions.shape[0])
        return jax.lax.scan(one_step, state, (actions, keys))[1]

    first_obs = jax.vmap(env.get_obs)(states)
    keys = jax.random.split(jax.random.key(1), actions.shape[0])
    outputs = jax.jit(jax.vmap(episode))(states, jnp.asarray(actions, jnp.int32), keys)
    obs, rewards, terminated, truncated = (np.asarray(x) for x in outputs)
    first_obs = np.asarray(first_obs)
    traces = []
    for i in range(actions.shape[0]):
        trace = Trace(first_obs[i])
        for t in range(actions.shape[1]):
            trace.add(actions[i, t], obs[i, t], rewards[i, t], terminated[i, t], truncated[i, t])
            if trace.done:
                break
        traces.append(trace)
    return traces


def popgym_one_hot(obs: np.ndarray) -> np.ndarray:
    return np.eye(5)[np.asarray(obs)].reshape(-1)


def play_popgym(env_id: str, grid: np.ndarray, start, end, actions: np.ndarray) -> Trace:
    reference = popgym_env(env_id)
    StandInMaze.planned.append((mazelib_grid(grid), start, end))
    obs, _ = reference.reset(seed=0)
    trace = Trace(popgym_one_hot(obs))
    for action in actions:
        obs, reward, terminated, truncated, _ = reference.step(int(action))
        trace.add(action, popgym_one_hot(obs), reward, terminated, truncated)
        if trace.done:
            break
    return trace


def path_actions(grid: np.ndarray, source, target) -> list[int]:
    """The moves of the shortest path from ``source`` to ``target``."""
    came_from, queue = {tuple(source): None}, deque([tuple(source)])
    while queue:
        square = queue.popleft()
        for action, nxt in neighbours(grid, square):
            if nxt not in came_from:
                came_from[nxt] = (square, action)
                queue.append(nxt)
    actions, square = [], tuple(target)
    while came_from[square] is not None:
        square, action = came_from[square]
        actions.append(action)
    return actions[::-1]


def tour_actions(grid: np.ndarray, source) -> list[int]:
    """A depth-first tour of every square reachable from ``source``, walking back out of each
    dead end; exploring ends on its last new square, before the tour's final walk back."""
    back = {0: 1, 1: 0, 2: 3, 3: 2}
    seen, actions = {tuple(source)}, []

    def visit(square):
        for action, nxt in neighbours(grid, square):
            if nxt not in seen:
                seen.add(nxt)
                actions.append(action)
                visit(nxt)
                actions.append(back[action])

    visit(tuple(source))
    return actions


def scenarios(env_id: str, seed: int) -> list[tuple[np.ndarray, tuple, tuple, list[int]]]:
    """(grid, start, end, actions) in one of our mazes per start side: random actions, and a
    scripted policy that first bumps off the grid and into the outer wall, then walks the
    shortest path to the exit (Escape; also idling until it arrives on the very last step) or
    tours the maze (Explore)."""
    grids, positions = our_mazes(env_id)
    rows, cols = grids.shape[1:]
    rng = np.random.default_rng(seed)
    cases = []
    for side in SIDES:
        i = next(i for i, p in enumerate(positions) if entrance_side(tuple(p), rows, cols) == side)
        grid, start = grids[i], tuple(int(x) for x in positions[i])
        end = the_exit(grid) or start  # LabyrinthExplore has no exit; POPGym ignores its end
        outward = OUTWARD[side]
        along = 1 if side in ("north", "south") else 3  # along the outer wall: a wall
        if env_id.startswith("LabyrinthEscape"):
            path = path_actions(grid, start, end)
            cases.append((grid, start, end, [outward, along] + path))
            cases.append((grid, start, end, [outward] * (EPISODE_LENGTH - len(path)) + path))
        else:
            cases.append((grid, start, end, [outward, along] + tour_actions(grid, start)))
        cases.append((grid, start, end, list(rng.integers(4, size=EPISODE_LENGTH))))
    return cases


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_steps_like_popgym_in_the_same_maze(env_id: str) -> None:
    env, _ = ours(env_id)
    cases = scenarios(env_id, seed=CELLS_A_SIDE[level_of(env_id)])
    length = max(len(actions) for *_, actions in cases)
    actions = np.array([a + [0] * (length - len(a)) for *_, a in cases])
    states = jax.tree.map(
        lambda *leaves: jnp.stack(leaves),
        *[our_state(env, grid, start) for grid, start, _, _ in cases],
    )
    traces = play_ours(env_id, states, actions)
    endings = set()
    for (grid, start, end, case_actions), trace in zip(cases, traces, strict=True):
        reference = play_popgym(env_id, grid, start, end, case_actions)
        assert_same_trace(trace, reference)
        endings.add((trace.terminated[-1], trace.truncated[-1], len(trace.actions)))
    escaping = env_id.startswith("LabyrinthEscape")
    # The scripted policies finish the task; random play too on small mazes, or runs out of time.
    assert (True, False) in {e[:2] for e in endings}
    if escaping:  # arriving on the last step is both a termination and a truncation, as in POPGym
        assert (True, True, EPISODE_LENGTH) in endings


# ---------------------------------------------------------------------------------------------
# The maze law.


def check_mazes(grids: np.ndarray, positions: np.ndarray, cells: int, has_exit: bool):
    """Every maze is perfect and its entrances are where mazelib puts them: the start on the
    outer wall beside a cell (odd along its side), the exit (LabyrinthEscape; LabyrinthExplore
    keeps mazelib's end a wall) on the opposite side. Returns each maze's start side and the
    cells beside the start and the exit."""
    rows, cols = grids.shape[1:]
    sides, start_cells, exit_cells = [], [], []
    for grid, position in zip(grids, positions, strict=True):
        start = tuple(int(x) for x in position)
        assert grid[start] == START
        side = entrance_side(start, rows, cols)
        along = 1 if side in ("north", "south") else 0
        assert start[along] % 2 == 1
        exits = np.argwhere(grid == EXIT)
        assert len(exits) == has_exit
        if has_exit:
            assert entrance_side(tuple(exits[0]), rows, cols) == OPPOSITE[side]
            assert exits[0][along] % 2 == 1
            exit_cells.append(exits[0][along] // 2)
        assert_perfect_maze(grid == FREE, cells, cells)
        sides.append(SIDES.index(side))
        start_cells.append(start[along] // 2)
    return sides, start_cells, exit_cells


def reference_sample(level: str, num_mazes: int, seed: int) -> np.ndarray:
    """(dead ends, path length) of ``num_mazes`` reference mazes with reference entrances."""
    random.seed(seed)
    cells = CELLS_A_SIDE[level]
    stats = []
    for _ in range(num_mazes):
        grid = reference_hunt_and_kill(cells, cells)
        start, end = reference_entrances(*grid.shape)
        stats.append(maze_statistics(grid == 0, start, end))
    return np.array(stats)


def our_sample(grids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    stats = []
    for grid, position in zip(grids, positions, strict=True):
        start = tuple(int(x) for x in position)
        (end,) = np.argwhere(grid == EXIT)
        stats.append(maze_statistics(grid == FREE, start, end))
    return np.array(stats)


def auto_reset_mazes(env_id: str, num_mazes: int, seed: int, max_steps: int):
    """Grids and starts of episodes begun by the auto-reset, episodes cut at ``max_steps`` (short
    enough that part of each maze is carved in the background and the rest at the reset)."""
    env, params = ours(env_id, max_steps_in_episode=max_steps)
    num_envs = 256

    def run(key):
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)

        def one_step(state, key):
            action_key, step_key = jax.random.split(key)
            actions = jax.random.randint(action_key, (num_envs,), 0, 4)
            _, state, _, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_envs), state, actions, params
            )
            return state, (state.grid, state.position, terminated | truncated)

        steps = max_steps * (num_mazes // num_envs + 1)
        return jax.lax.scan(one_step, state, jax.random.split(key, steps))[1]

    grids, positions, done = (np.asarray(x) for x in jax.jit(run)(jax.random.key(seed)))
    return grids[done][:num_mazes], positions[done][:num_mazes]


@pytest.mark.parametrize("level", LEVELS)
def test_mazes_follow_mazelibs_law(level: str) -> None:
    cells = CELLS_A_SIDE[level]
    grids, positions = our_mazes("LabyrinthExplore" + level)
    check_mazes(grids[:100], positions[:100], cells, has_exit=False)
    grids, positions = our_mazes("LabyrinthEscape" + level)
    sides, start_cells, exit_cells = check_mazes(grids, positions, cells, has_exit=True)
    # The start side, and the cells beside the start and the exit, are uniform (chi-square at
    # level 1e-4) and independent of each other (mazelib draws them apart).
    for counts in (np.bincount(sides, minlength=4), np.bincount(start_cells, minlength=cells)):
        assert scipy.stats.chisquare(counts).pvalue > 1e-4
    joint = np.zeros((cells, cells))
    np.add.at(joint, (start_cells, exit_cells), 1)
    assert scipy.stats.chi2_contingency(joint).pvalue > 1e-4
    # Dead ends and start-to-exit path lengths have the reference generator's law.
    reference = reference_sample(level, len(grids), seed=4)
    assert_same_statistics(our_sample(grids, positions), reference)


def assert_same_statistics(ours: np.ndarray, reference: np.ndarray) -> None:
    for column in range(2):  # dead ends, path length
        assert_same_law(ours[:, column].astype(float), reference[:, column].astype(float))


def test_auto_reset_mazes_follow_mazelibs_law() -> None:
    """The mazes that the auto-reset starts episodes in, with episodes cut at 5 steps: each is
    carved partly in the background (3 passages a step) and finished at the reset."""
    grids, positions = auto_reset_mazes("LabyrinthEscapeEasy", 1000, seed=6, max_steps=5)
    sides, start_cells, _ = check_mazes(grids, positions, 5, has_exit=True)
    assert scipy.stats.chisquare(np.bincount(sides, minlength=4)).pvalue > 1e-4
    assert_same_statistics(our_sample(grids, positions), reference_sample("Easy", 1000, seed=7))


@pytest.mark.parametrize("picks_budget", [49, 4])
def test_whole_maze_law_equals_mazelibs_on_3_by_3(picks_budget: int) -> None:
    """The law of the whole maze, for 3 x 3 cells (mazelib's smallest; 192 spanning trees): each
    distinct maze is a category, and ours and the reference's counts must agree (chi-square at
    level 1e-4, categories seen fewer than 10 times pooled). With mazelib's budget (49 picks)
    this checks the walk and the hunt's target; with 4 picks a maze is often left unfinished,
    which depends on every hunt's pick count too: ours draws it at once, mazelib one pick at a
    time."""
    num_mazes = 12000
    random.seed(7)
    reference = [
        reference_hunt_and_kill(3, 3, picks_budget).astype(bool).tobytes() for _ in range(num_mazes)
    ]

    def one_maze(key):
        start_key, carve_key = jax.random.split(key)
        maze = mazes.start(jax.random.uniform(start_key, (2,)), 3, 3)
        return ~mazes.finish(carve_key, maze, picks_budget).open  # walls, as mazelib marks them

    keys = jax.random.split(jax.random.key(8), num_mazes)
    ours = [grid.tobytes() for grid in np.asarray(jax.jit(jax.vmap(one_maze))(keys))]
    kinds = sorted(set(ours) | set(reference))
    table = np.array([[sample.count(kind) for kind in kinds] for sample in (ours, reference)])
    common = table.sum(axis=0) >= 10
    table = np.column_stack([table[:, common], table[:, ~common].sum(axis=1)])
    assert table.shape[1] >= 150  # most of the 192 spanning trees (and unfinished mazes) seen
    assert scipy.stats.chi2_contingency(table).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# Random play: returns, and training conditions.


def popgym_random_returns(env_id: str, num_episodes: int, seed: int) -> np.ndarray:
    return popgym_episode_returns(
        popgym_env(env_id), lambda rng, *_: int(rng.integers(4)), num_episodes, seed
    )


def our_random_returns(env_id: str, num_episodes: int, seed: int) -> np.ndarray:
    """Returns of the first episode of each of ``num_episodes`` vmapped envs, EpisodeStatistics'
    count."""
    env, params = ours(env_id)
    env = EpisodeStatistics(env)

    def run(key: jax.Array):
        _, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(key, num_episodes), params
        )

        def one_step(carry, key):
            state, first_return = carry
            action_key, step_key = jax.random.split(key)
            actions = jax.random.randint(action_key, (num_episodes,), 0, 4)
            _, state, _, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_episodes), state, actions, params
            )
            ended = info["returned_episode"] & jnp.isnan(first_return)
            first_return = jnp.where(ended, info["returned_episode_returns"], first_return)
            return (state, first_return), None

        carry = (state, jnp.full((num_episodes,), jnp.nan))
        keys = jax.random.split(key, env.episode_length)
        return jax.lax.scan(one_step, carry, keys)[0][1]

    returns = np.asarray(jax.jit(run)(jax.random.key(seed)))
    assert not np.isnan(returns).any()
    return returns


@pytest.mark.parametrize("env_id", ["LabyrinthEscapeEasy", "LabyrinthExploreEasy"])
def test_random_play_returns_equal_popgyms(env_id: str) -> None:
    returns = our_random_returns(env_id, 1000, seed=9)
    reference = popgym_random_returns(env_id, 150, seed=10)
    assert_same_law(returns, reference)
    assert np.all(np.abs(returns) <= 1.0 + 1e-6) and returns.std() > 0
