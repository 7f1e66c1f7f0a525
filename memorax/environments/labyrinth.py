"""LabyrinthEscape and LabyrinthExplore (POPGym): walk a hunt-and-kill maze seeing only 3 x 3.

Both tasks drop the agent on the start square, an opening in the maze's outer wall, in a fresh
hunt-and-kill maze (``memorax.environments.maze``) of 5 x 5, 7 x 7 or 9 x 9 cells (POPGym's
``maze_dims`` (10, 10), (14, 14), (18, 18): a grid of 11, 15 or 19 squares a side). Actions are
Discrete(4): left, right, up, down; a move into a wall, or out of the grid, leaves the agent where
it is. With L = ``max_episode_length`` (1024), every step costs 1 / L, and:

- ``LabyrinthEscape``: the exit is an opening in the opposite outer wall. Stepping onto it pays
  1 - 1 / L and terminates the episode.
- ``LabyrinthExplore``: there is no exit (the opposite opening stays wall). A step onto a square
  the agent has not stood on pays 1 / F instead of the cost, F the free squares of the maze (all
  open squares but the start); the episode terminates once every open square has been visited.

As in POPGym the episode is truncated on step L - 1 = 1023 (``curr_step == max_episode_length -
1``), also when that step terminates it, so ``episode_length`` is 1023. Returns lie in [-1, 1].

The observation is POPGym's MultiDiscrete([5] * 10): the 3 x 3 squares around the agent (0 free,
1 wall, 2 start, 3 exit; row-major) and the last action (4 at reset), each one-hot: [50] floats.
We reproduce POPGym's view exactly, including its quirk at the top and left edges of the grid:
there it slices the grid from the edge and pads below or to the right, so an agent on the top
row sees its own row at the top of the view, not the middle (it only stands there on a start or
exit square). POPGym's maze tasks need no memory to be solved well (its own docs warn that an MLP
beats an LSTM); they are here to complete the benchmark.

Auto-reset without a maze per step: gymnax's ``step`` computes a fresh reset at every step for
every env (both branches run under vmap), and a hunt-and-kill maze takes cells - 1 sequential
carving steps. So each env's state carries the *next* episode's maze, and every step carves
``carves_per_step`` passages of it, enough that it is finished before the shortest possible
episode ends (the exit lies a grid width away). ``step`` starts a new episode on that maze;
should an episode end before it is finished (a ``max_steps_in_episode`` shorter than POPGym's),
the rest is carved then, in a loop that runs only while some env needs it. ``reset`` builds its
maze whole. The mazes have the law of POPGym's either way: the draws are the same, only when
they happen differs.

Deliberate differences from POPGym 1.0.7: the maze comes from our hunt-and-kill, drawn with the
same law as mazelib's but other random numbers (tests/test_popgym_labyrinth.py checks the law);
and POPGym's view bounds columns by the grid's height, ours by its width (the same on POPGym's
square mazes).
"""

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from memorax.environments import maze as mazes

# POPGym's square kinds (popgym.core.maze.Cell) and its action for "no action yet".
FREE, WALL, START, EXIT = 0, 1, 2, 3
NUM_SQUARE_KINDS = 5  # POPGym's Cell also has HIDDEN, which observations never show
NO_ACTION = 4
NUM_ACTIONS = 4
# (row, column) step of each action: left, right, up, down.
MOVES = jnp.array([[0, -1], [0, 1], [-1, 0], [1, 0]], jnp.int32)


@struct.dataclass
class LabyrinthState(environment.EnvState):
    grid: jax.Array  # [rows, cols] int32: POPGym's squares (FREE, WALL, START, EXIT)
    position: jax.Array  # [2] int32: the agent's square (row, column)
    visited: jax.Array  # [rows, cols] bool: squares the agent has stood on
    last_action: jax.Array  # int32: the action the observation shows; NO_ACTION at reset
    next_maze: mazes.MazeBuilder  # the next episode's maze, carved a few passages per step
    time: int


def local_view(grid: jax.Array, position: jax.Array) -> jax.Array:
    """POPGym's 3 x 3 view: the grid from (row - 1, col - 1) clipped at 0, to (row + 1, col + 1)
    clipped at the last row and column, padded with wall below and to the right. [9] int32."""
    rows, cols = grid.shape
    offsets = jnp.arange(3)
    view_rows = jnp.maximum(position[0] - 1, 0) + offsets
    view_cols = jnp.maximum(position[1] - 1, 0) + offsets
    inside = (view_rows <= jnp.minimum(position[0] + 1, rows - 1))[:, None] & (
        view_cols <= jnp.minimum(position[1] + 1, cols - 1)
    )[None, :]
    squares = grid[jnp.minimum(view_rows, rows - 1)[:, None], jnp.minimum(view_cols, cols - 1)]
    return jnp.where(inside, squares, WALL).reshape(-1)


class Labyrinth(environment.Environment[LabyrinthState, environment.EnvParams]):
    """What both labyrinths share: the maze, the moves, the view and the amortised reset."""

    env_id: str | None = None
    """The registry id this env was built under (e.g. "LabyrinthEscapeEasy"), which is its name."""
    has_exit: bool

    def __init__(self, maze_dims: tuple[int, int] = (10, 10), max_episode_length: int = 1024):
        height, width = maze_dims
        if height % 2 or width % 2 or min(height, width) < 6:
            raise ValueError(
                f"maze_dims ({maze_dims!r}) must be even and at least 6, e.g. (10, 10): POPGym's "
                "mazes have maze_dims / 2 cells a side, and mazelib needs 3 or more"
            )
        if max_episode_length < 2:
            raise ValueError(f"max_episode_length ({max_episode_length}) must be at least 2")
        self.maze_dims = (height, width)
        self.num_rows, self.num_cols = height // 2, width // 2
        self.max_episode_length = max_episode_length
        self.episode_length = max_episode_length - 1
        self.step_cost = 1.0 / max_episode_length
        self.picks_budget = mazes.max_picks(self.num_rows, self.num_cols)
        # Enough passages per step that the next maze (cells - 1 passages) is finished when the
        # shortest episode ends: the exit lies a grid's width away, and exploring stands on the
        # 2 cells - 1 open squares of a perfect maze.
        num_passages = self.num_rows * self.num_cols - 1
        shortest_episode = 2 * min(self.num_rows, self.num_cols) if self.has_exit else num_passages
        self.carves_per_step = math.ceil(num_passages / shortest_episode)
        self.obs_size = 10 * NUM_SQUARE_KINDS

    @property
    def name(self) -> str:
        return self.env_id or type(self).__name__

    @property
    def default_params(self) -> environment.EnvParams:
        return environment.EnvParams(max_steps_in_episode=self.episode_length)

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: environment.EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: environment.EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.obs_size,), jnp.float32)

    def is_truncated(self, state: LabyrinthState, params: environment.EnvParams) -> jax.Array:
        return jnp.asarray(
            state.time >= jnp.minimum(params.max_steps_in_episode, self.episode_length)
        )

    def get_obs(self, state: LabyrinthState, params=None, key=None) -> jax.Array:
        shown = jnp.append(local_view(state.grid, state.position), state.last_action)
        return jax.nn.one_hot(shown, NUM_SQUARE_KINDS, dtype=jnp.float32).reshape(-1)

    def begin_episode(self, draws: jax.Array, open_squares: jax.Array) -> LabyrinthState:
        """The first state of an episode in the maze ``open_squares`` ([rows, cols] bool), given
        ``draws``, [5] uniforms in [0, 1): three place the entrances (``mazes.entrances``), two
        start the next episode's maze. One draw of five: each random call costs a hash under
        vmap, and this runs at every step."""
        start, end = mazes.entrances(draws[:3], self.num_rows, self.num_cols)
        grid = jnp.where(open_squares, FREE, WALL).astype(jnp.int32)
        grid = grid.at[start[0], start[1]].set(START)
        if self.has_exit:
            grid = grid.at[end[0], end[1]].set(EXIT)
        return LabyrinthState(
            grid=grid,
            position=start,
            visited=jnp.zeros(grid.shape, bool).at[start[0], start[1]].set(True),
            last_action=jnp.int32(NO_ACTION),
            next_maze=mazes.start(draws[3:], self.num_rows, self.num_cols),
            time=jnp.int32(0),
        )

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, LabyrinthState]:
        maze_key, draw_key = jax.random.split(key)
        open_squares = mazes.generate(maze_key, self.num_rows, self.num_cols)
        state = self.begin_episode(jax.random.uniform(draw_key, (5,)), open_squares)
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: LabyrinthState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, LabyrinthState, jax.Array, jax.Array, dict]:
        rows, cols = state.grid.shape
        target = jnp.clip(state.position + MOVES[action], 0, jnp.array([rows - 1, cols - 1]))
        blocked = state.grid[target[0], target[1]] == WALL
        position = jnp.where(blocked, state.position, target)
        first_visit = ~state.visited[position[0], position[1]]
        draws = jax.random.uniform(key, (self.carves_per_step, 3))
        next_maze = jax.lax.fori_loop(  # a loop, not unrolled: one carve to compile
            0,
            self.carves_per_step,
            lambda i, maze: mazes.carve(draws[i], maze, self.picks_budget),
            state.next_maze,
        )
        new_state = LabyrinthState(
            grid=state.grid,
            position=position,
            visited=state.visited.at[position[0], position[1]].set(True),
            last_action=jnp.asarray(action, jnp.int32),
            next_maze=next_maze,
            time=state.time + 1,
        )
        reward, terminated = self.reward_and_terminated(new_state, first_visit)
        return self.get_obs(new_state), new_state, reward.astype(jnp.float32), terminated, {}

    def reward_and_terminated(
        self, state: LabyrinthState, first_visit: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: LabyrinthState,
        action: int | jax.Array,
        params: environment.EnvParams | None = None,
    ) -> tuple[jax.Array, LabyrinthState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """gymnax 1.0's auto-resetting step, but the new episode starts in the maze the state
        carved (finished here if the episode was too short for it), not in one built now."""
        if params is None:
            params = self.default_params
        step_key, reset_key = jax.random.split(key)
        obs_step, state_step, reward, terminated, info = self.step_env(
            step_key, state, action, params
        )
        truncated = self.is_truncated(state_step, params)
        done = terminated | truncated
        finish_key, draw_key = jax.random.split(reset_key)
        maze = mazes.finish(finish_key, state_step.next_maze, self.picks_budget, needed=done)
        state_reset = self.begin_episode(jax.random.uniform(draw_key, (5,)), maze.open)
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state_reset, state_step)
        obs = jnp.where(done, self.get_obs(state_reset), obs_step)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_step,
        }
        return obs, state, reward, terminated, truncated, info


class LabyrinthEscape(Labyrinth):
    """Find the exit in the opposite outer wall; see the module docstring."""

    has_exit = True

    def reward_and_terminated(
        self, state: LabyrinthState, first_visit: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        escaped = state.grid[state.position[0], state.position[1]] == EXIT
        return jnp.where(escaped, 1.0, 0.0) - self.step_cost, escaped


class LabyrinthExplore(Labyrinth):
    """Stand on every open square of the maze; see the module docstring."""

    has_exit = False

    def reward_and_terminated(
        self, state: LabyrinthState, first_visit: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        new_square_reward = 1.0 / jnp.sum(state.grid == FREE)
        reward = jnp.where(first_visit, new_square_reward, -self.step_cost)
        return reward, jnp.all(state.visited | (state.grid == WALL))


DIFFICULTIES = {
    "Easy": dict(maze_dims=(10, 10)),
    "Medium": dict(maze_dims=(14, 14)),
    "Hard": dict(maze_dims=(18, 18)),
}
"""POPGym's settings: make("LabyrinthEscapeHard") builds LabyrinthEscape(**DIFFICULTIES["Hard"])."""
