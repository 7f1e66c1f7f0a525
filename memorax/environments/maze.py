"""Hunt-and-kill mazes as POPGym's labyrinths draw them (mazelib's ``HuntAndKill``), in JAX.

A maze of ``num_rows x num_cols`` cells lives on a grid of (2 num_rows + 1) x (2 num_cols + 1)
squares: cell (i, j) is square (2i + 1, 2j + 1), the squares between two cells are the walls that
carving opens, and the border is wall. POPGym (``popgym.core.maze``) draws its mazes with mazelib's
hunt-and-kill with random hunting, which is:

1. Mark a uniformly random cell visited; it is the walk's current cell.
2. Walk: while the current cell has unvisited neighbours, carve to one of them chosen uniformly
   and move there.
3. Hunt: pick a cell uniformly at random; if it is visited, walk from it (step 2). Hunting stops
   after (2 num_rows + 1)(2 num_cols + 1) picks in all, which may in principle leave cells
   unvisited (walls); we never saw it happen in 60 000 mazes of each POPGym size.

Picks that land on an unvisited cell or on a visited cell without unvisited neighbours change
nothing, so the picks until the first one that starts a walk are a geometric number
(success probability |F| / cells, F the visited cells that have unvisited neighbours) and that
pick is uniform over F. ``carve`` draws exactly that: each call carves one passage, hunting first
when the walk is stuck, and spends the geometric number of picks. A maze then takes cells - 1
calls, each of fixed shape, which is what lets an env build the next episode's maze a few
passages per step instead of all at once at reset (see ``memorax.environments.labyrinth``).

Without the pick budget every hunt-and-kill maze is perfect: its open squares form a spanning
tree of the cells (every cell reachable from every other by exactly one path).
"""

import jax
import jax.numpy as jnp
from flax import struct

# Cell offsets of the four neighbours: up, down, left, right.
NEIGHBOURS = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)


@struct.dataclass
class MazeBuilder:
    """A hunt-and-kill maze in progress."""

    open: jax.Array  # [2 rows + 1, 2 cols + 1] bool: carved squares (visited cells, passages)
    current: jax.Array  # [2] int32: the walk's current cell (cell coordinates)
    picks: jax.Array  # int32: hunting picks spent so far
    unvisited: jax.Array  # int32: cells not yet visited
    finished: jax.Array  # bool: every cell is visited, or the pick budget ran out


def grid_shape(num_rows: int, num_cols: int) -> tuple[int, int]:
    return 2 * num_rows + 1, 2 * num_cols + 1


def max_picks(num_rows: int, num_cols: int) -> int:
    """mazelib's hunting budget: one pick per square of the grid."""
    rows, cols = grid_shape(num_rows, num_cols)
    return rows * cols


def start(draws: jax.Array, num_rows: int, num_cols: int) -> MazeBuilder:
    """A maze whose only visited cell, the walk's start, is uniformly random, given ``draws``,
    [2] uniforms in [0, 1) (the row, the column)."""
    sizes = jnp.array([num_rows, num_cols])
    cell = jnp.minimum(jnp.floor(draws * sizes), sizes - 1).astype(jnp.int32)
    open_squares = jnp.zeros(grid_shape(num_rows, num_cols), bool)
    return MazeBuilder(
        open=open_squares.at[2 * cell[0] + 1, 2 * cell[1] + 1].set(True),
        current=cell,
        picks=jnp.int32(0),
        unvisited=jnp.int32(num_rows * num_cols - 1),
        finished=jnp.bool_(num_rows * num_cols == 1),
    )


def uniform_true(mask: jax.Array, draw: jax.Array) -> jax.Array:
    """(row, column) of a uniformly random True entry of the 2-D ``mask``, which must have one,
    from one uniform ``draw`` in [0, 1): the entry of that rank in row-major order, found row
    first (prefix sums over a whole flat mask cost XLA a quadratic reduce-window)."""
    per_row = mask.sum(axis=1)
    rows_through = jnp.cumsum(per_row)
    rank = jnp.minimum(jnp.floor(draw * rows_through[-1]), rows_through[-1] - 1)
    row = jnp.argmax(rows_through > rank)
    rank_in_row = rank - (rows_through[row] - per_row[row])
    column = jnp.argmax(jnp.cumsum(mask[row]) > rank_in_row)
    return jnp.stack([row, column]).astype(jnp.int32)


def carve(draws: jax.Array, maze: MazeBuilder, picks_budget: int) -> MazeBuilder:
    """Carves the next passage of hunt-and-kill (a no-op on a finished maze), given ``draws``,
    [3] uniforms in [0, 1): the hunted cell, the picks spent on the hunt, the direction."""
    visited = maze.open[1::2, 1::2]  # [rows, cols]
    unvisited = jnp.pad(~visited, 1)  # [rows + 2, cols + 2]: outside the maze counts as visited
    frontier = visited & (
        unvisited[:-2, 1:-1] | unvisited[2:, 1:-1] | unvisited[1:-1, :-2] | unvisited[1:-1, 2:]
    )

    def options(cell: jax.Array) -> jax.Array:  # [4] bool: unvisited neighbours of a cell
        return unvisited[cell[0] + 1 + NEIGHBOURS[:, 0], cell[1] + 1 + NEIGHBOURS[:, 1]]

    stuck = ~options(maze.current).any()

    # Hunting: the first useful pick is uniform over the frontier, after a geometric number of
    # picks (the useless ones included), success probability |frontier| / cells.
    success = frontier.sum() / frontier.size
    log_survival = jnp.log1p(-draws[1])  # the log of a uniform on (0, 1]
    spent = jnp.floor(log_survival / jnp.log1p(-jnp.minimum(success, 1.0))) + 1.0
    budget_left = (success > 0) & (maze.picks + spent <= picks_budget)

    carving = ~maze.finished & (~stuck | budget_left)
    cell = jnp.where(stuck, uniform_true(frontier, draws[0]), maze.current)
    offset = NEIGHBOURS[uniform_true(options(cell)[None], draws[2])[1]]
    passage = 2 * cell + 1 + offset
    neighbour = cell + offset
    square = 2 * neighbour + 1
    open_squares = maze.open.at[passage[0], passage[1]].set(
        maze.open[passage[0], passage[1]] | carving
    )
    open_squares = open_squares.at[square[0], square[1]].set(
        open_squares[square[0], square[1]] | carving
    )
    remaining = maze.unvisited - carving
    return MazeBuilder(
        open=open_squares,
        current=jnp.where(carving, neighbour, maze.current),
        picks=jnp.where(carving & stuck, maze.picks + spent.astype(jnp.int32), maze.picks),
        unvisited=remaining,
        finished=maze.finished | ~carving | (remaining == 0),
    )


def finish(
    key: jax.Array, maze: MazeBuilder, picks_budget: int, needed: jax.Array | bool = True
) -> MazeBuilder:
    """Carves until the maze is finished, where ``needed``. Under vmap the loop runs only as long
    as some lane needs it, so finishing mazes that are already finished costs nothing."""

    def unfinished(carry: tuple[jax.Array, MazeBuilder]) -> jax.Array:
        return needed & ~carry[1].finished

    def carve_one(carry: tuple[jax.Array, MazeBuilder]) -> tuple[jax.Array, MazeBuilder]:
        key, maze = carry
        key, carve_key = jax.random.split(key)
        return key, carve(jax.random.uniform(carve_key, (3,)), maze, picks_budget)

    return jax.lax.while_loop(unfinished, carve_one, (key, maze))[1]


def generate(key: jax.Array, num_rows: int, num_cols: int) -> jax.Array:
    """A whole hunt-and-kill maze: [2 num_rows + 1, 2 num_cols + 1] bool, True where open."""
    start_key, carve_key = jax.random.split(key)
    maze = start(jax.random.uniform(start_key, (2,)), num_rows, num_cols)
    return finish(carve_key, maze, max_picks(num_rows, num_cols)).open


def entrances(draws: jax.Array, num_rows: int, num_cols: int) -> tuple[jax.Array, jax.Array]:
    """mazelib's outer entrances: a uniform side of the border for the start and the opposite
    side for the end, each beside a uniformly random cell of its side, given ``draws``, [3]
    uniforms in [0, 1) (the side, the start's cell, the end's cell). Returns (start, end) as [2]
    int32 grid squares (row, column)."""
    rows, cols = grid_shape(num_rows, num_cols)
    side = jnp.minimum(jnp.floor(4 * draws[0]), 3).astype(jnp.int32)  # north, south, west, east
    along_rows = side >= 2
    cells_along = jnp.where(along_rows, num_rows, num_cols)
    start_at, end_at = 2 * jnp.minimum(jnp.floor(draws[1:] * cells_along), cells_along - 1) + 1
    start_edge = jnp.array([0, rows - 1, 0, cols - 1])[side]
    end_edge = jnp.array([rows - 1, 0, cols - 1, 0])[side]
    start_square = jnp.where(
        along_rows, jnp.stack([start_at, start_edge]), jnp.stack([start_edge, start_at])
    )
    end_square = jnp.where(along_rows, jnp.stack([end_at, end_edge]), jnp.stack([end_edge, end_at]))
    return start_square.astype(jnp.int32), end_square.astype(jnp.int32)
