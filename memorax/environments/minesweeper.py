"""MineSweeper (POPGym): clear every safe square of a hidden board without stepping on a mine.

``num_mines`` mines lie under distinct squares of a board_size x board_size board, all layouts
equally likely. Each action clicks one square and the observation is the number of mines in the
3 x 3 block around it, the square itself included (so a mine shows at least 1): POPGym's
Discrete(min(num_mines + 1, 10)) (0 at reset), one-hot. With L = board_size^2 - num_mines, the
number of safe squares:

- a safe square clicked for the first time: +1 / L; clearing all L terminates the episode;
- a safe square clicked again: -0.5 / (L - 2);
- a mine: -0.5 - 1 / L, and the episode terminates;
- the episode is truncated after L steps (only reached with a repeated click, else it cleared).

A return lies in [-1, 1]: 1 for clearing the board; -1 for one new square, L - 2 repeats and then
a mine, the worst possible (POPGym's scale).

The observation does not say which square was clicked: POPGym marks the task as needing the
previous action, so train with ``--use-prev-action``. The memory needed is the counts seen where.

Deliberate differences from POPGym (popgym 1.0.7), checked in tests/test_popgym_boards.py:

- The action is one flat Discrete(board_size^2) index, row * board_size + column, where POPGym
  has MultiDiscrete([board_size, board_size]) = (row, column): memorax's agents sample one
  categorical action.
- The observation is one-hot (memorax's float observations) where POPGym's is the integer.

The state keeps the mines as a list of squares, not a board: a click's count checks each mine.
The layout is drawn with Floyd's algorithm (Bentley & Floyd 1987): num_mines draws, each checked
against the mines drawn before, which is a uniform layout as POPGym's (numpy's choice without
replacement) is, at O(num_mines^2) instead of a shuffle of the board at gymnax's reset at every
step of an auto-resetting env. The clicked squares are kept as a board of flags.
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from memorax.environments.cards import CardGame, one_hot, random_words


@struct.dataclass
class MineSweeperState(environment.EnvState):
    mines: jax.Array  # [num_mines] int32: flat index (row * board_size + column) of each mine
    clicked: jax.Array  # [board_size^2] bool: the safe squares clicked so far
    num_clicked: jax.Array  # int32: how many safe squares have been clicked
    exploded: jax.Array  # bool: the last click was on a mine
    count: jax.Array  # int32: mines around the square last clicked (0 at reset)
    time: int


def place_mines(key: jax.Array, num_squares: int, num_mines: int) -> jax.Array:
    """A uniformly random set of ``num_mines`` distinct squares (Floyd): [num_mines] int32.

    Draw i is uniform over the first num_squares - num_mines + i + 1 squares, taken as a 32-bit
    random word modulo that count: the bias is below count / 2^32 (1.5e-8 on POPGym's boards). The
    words come from one hashed counter (``cards.random_words``), as threefry's would cost most of
    the reset."""
    words = random_words(key, num_mines)
    mines = jnp.full((num_mines,), -1, jnp.int32)
    # Unrolled, so that XLA fuses the draws into a few kernels.
    for i in range(num_mines):
        last = num_squares - num_mines + i
        square = (words[i] % (last + 1)).astype(jnp.int32)
        mines = mines.at[i].set(jnp.where(jnp.any(mines == square), last, square))
    return mines


class MineSweeper(CardGame):
    """Not a card game, but it shares CardGame's plumbing: name, default params and spaces."""

    def __init__(self, board_size: int = 4, num_mines: int = 2):
        if not isinstance(board_size, int) or board_size < 2:
            raise ValueError(f"board_size ({board_size!r}) must be an integer >= 2")
        # Rewards divide by L - 2, so at least 3 squares must be safe.
        if not isinstance(num_mines, int) or not 1 <= num_mines <= board_size**2 - 3:
            raise ValueError(
                f"num_mines ({num_mines!r}) must be an integer in [1, board_size^2 - 3 = "
                f"{board_size**2 - 3}]"
            )
        self.board_size = board_size
        self.num_mines = num_mines
        self.episode_length = board_size**2 - num_mines
        self.obs_size = min(num_mines + 1, 10)
        self.clear_reward = 1.0 / self.episode_length
        self.repeat_reward = -0.5 / (self.episode_length - 2)
        self.mine_reward = -0.5 - self.clear_reward

    @property
    def num_actions(self) -> int:
        return self.board_size**2

    def is_terminated(self, state: MineSweeperState, params: environment.EnvParams) -> jax.Array:
        return state.exploded | (state.num_clicked == self.episode_length)

    def is_truncated(self, state: MineSweeperState, params: environment.EnvParams) -> jax.Array:
        # POPGym's L steps are a time limit that never cuts short an episode that just ended.
        limit = jnp.minimum(params.max_steps_in_episode, self.episode_length)
        return (state.time >= limit) & ~self.is_terminated(state, params)

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, MineSweeperState]:
        state = MineSweeperState(
            mines=place_mines(key, self.board_size**2, self.num_mines),
            clicked=jnp.zeros((self.board_size**2,), bool),
            num_clicked=jnp.int32(0),
            exploded=jnp.bool_(False),
            count=jnp.int32(0),
            time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: MineSweeperState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, MineSweeperState, jax.Array, jax.Array, dict]:
        n = self.board_size
        exploded = jnp.any(state.mines == action)
        near = (jnp.abs(state.mines // n - action // n) <= 1) & (
            jnp.abs(state.mines % n - action % n) <= 1
        )
        repeated = state.clicked[action]
        cleared = ~exploded & ~repeated
        reward = jnp.where(
            exploded, self.mine_reward, jnp.where(repeated, self.repeat_reward, self.clear_reward)
        ).astype(jnp.float32)
        state = MineSweeperState(
            mines=state.mines,
            clicked=state.clicked.at[action].set(repeated | cleared),
            num_clicked=state.num_clicked + cleared,
            exploded=exploded,
            count=jnp.sum(near, dtype=jnp.int32),
            time=state.time + 1,
        )
        return self.get_obs(state), state, reward, self.is_terminated(state, params), {}

    def get_obs(self, state: MineSweeperState, params=None, key=None) -> jax.Array:
        return one_hot(state.count, self.obs_size)

    def board(self, state: MineSweeperState) -> jax.Array:
        """The mines: [board_size, board_size] bool (for display and tests)."""
        squares = jnp.arange(self.board_size**2)
        return jnp.any(squares[:, None] == state.mines, axis=1).reshape(self.board_size, -1)


DIFFICULTIES = {
    "Easy": dict(board_size=4, num_mines=2),
    "Medium": dict(board_size=6, num_mines=6),
    "Hard": dict(board_size=8, num_mines=10),
}
"""POPGym's settings: make("MineSweeperHard") builds MineSweeper(**DIFFICULTIES["Hard"])."""
