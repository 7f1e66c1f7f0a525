"""Battleship (POPGym): sink every ship on a hidden board, told only whether each shot hit.

Ships of ``ship_sizes`` lie hidden on a board_size x board_size board, each along a row or down a
column; ships may touch but never overlap. Each action fires at one square and the observation is
whether that shot hit a ship square not hit before: POPGym's Discrete(2) (0 at reset), one-hot:
[2]. A shot scores +1 / H when it hits (H = sum(ship_sizes), the hits that sink every ship) and
-1 / (L - H) otherwise, a repeated shot at a square already hit included. The episode terminates
when every ship is sunk and is truncated after L = board_size^2 steps; as in POPGym, the step
that sinks the last ship at step L reports both (terminated wins: nothing is bootstrapped).
An episode of hits only returns 1, one that fires at every square once returns 0, and one that
never hits returns -L / (L - H): POPGym's returns lie in [-L / (L - H), 1], slightly below -1
(-1.23 for Easy) for a policy that keeps missing.

The observation does not say where the shot went: POPGym marks the task as needing the previous
action, so train with ``--use-prev-action``. The memory needed is the record of shots and hits.

Deliberate differences from POPGym (popgym 1.0.7), checked in tests/test_popgym_boards.py:

- The action is one flat Discrete(board_size^2) index, row * board_size + column, where POPGym
  has MultiDiscrete([board_size, board_size]) = (row, column): memorax's agents sample one
  categorical action.
- The observation is one-hot (memorax's float observations) where POPGym's is the integer.

The layout has POPGym's law: each ship in turn, in the order of ``ship_sizes``, lies uniformly
among the placements inside the board that miss the ships before it (POPGym draws a start
square and a direction until the ship fits; every placement has two such draws). We draw
``PLACEMENT_TRIES`` placements inside the board at once and keep the first that misses the
earlier ships, redrawing in the rare case that none does; the numbers for every ship come from
one hashed counter (``cards.random_words``), as threefry's would cost most of the reset. The
state keeps each ship's bow and direction and which of its squares were hit, not a board: a shot
is checked against each ship, and gymnax's reset at every step of an auto-resetting env costs
O(ships^2 x tries), not O(board) (benchmarks/popgym_reset.py measures it).
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from memorax.environments.cards import CardGame, one_hot, random_words

PLACEMENT_TRIES = 16
"""Placements drawn at once for each ship. On POPGym's boards all of them miss
in fewer than 1 in 20,000 layouts (Easy; fewer on the larger boards); then the ship is redrawn."""


@struct.dataclass
class BattleshipState(environment.EnvState):
    bow: jax.Array  # [num_ships, 2] int32: (row, column) of each ship's top or left square
    vertical: jax.Array  # [num_ships] bool: the ship runs down its column; else along its row
    hit: jax.Array  # [num_ships, max(ship_sizes)] bool: which of each ship's squares were hit
    last_hit: jax.Array  # int32: 1 when the last shot hit, else 0 (and 0 at reset)
    time: int


def _overlaps(bow, vertical, size, other_bow, other_vertical, other_size) -> jax.Array:
    """Whether two ships share a square: their spans overlap in rows and in columns."""

    def spans(bow, vertical, size):
        length = jnp.asarray(size)[..., None] - 1
        last = bow + length * jnp.stack([vertical, ~vertical], axis=-1)
        return bow, last  # [..., 2] first and last (row, column)

    first, last = spans(bow, vertical, size)
    other_first, other_last = spans(other_bow, other_vertical, other_size)
    return jnp.all((first <= other_last) & (other_first <= last), axis=-1)


def _uniform(bits: jax.Array, num_bits: int, count: int) -> tuple[jax.Array, jax.Array]:
    """(value, usable): ``bits`` (uniform below 2^num_bits) mapped to [0, count) by Lemire's
    multiply-and-shift; values mapped from the first 2^num_bits mod count products of each low
    half are not usable, which makes the usable ones exactly uniform. No integer division,
    which a CPU does one element at a time."""
    product = bits * jnp.uint32(count)
    low = product & jnp.uint32((1 << num_bits) - 1)
    return (product >> num_bits).astype(jnp.int32), low >= (1 << num_bits) % count


def _first_fit(
    words: jax.Array, board_size: int, size: int, earlier: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(found, bow [2], vertical) of the first placement inside the board named by ``words``
    (uint32 [tries], one placement each) that misses the ``earlier`` ships (bow, vertical, size:
    [num_earlier, ...]); found is False when none does.

    A word names the direction (its top bit), the bow's place along the direction (15 bits) and
    across it (16 bits), each uniformly; the few words whose numbers are not usable (a fraction
    below 0.05% on POPGym's boards) are skipped, which keeps the law exact."""
    down = (words >> 31) == 1
    along, along_usable = _uniform((words >> 16) & 0x7FFF, 15, board_size - size + 1)
    across, across_usable = _uniform(words & 0xFFFF, 16, board_size)
    bows = jnp.where(down[:, None], jnp.stack([along, across], 1), jnp.stack([across, along], 1))
    clash = _overlaps(bows[:, None], down[:, None], size, *earlier)  # [tries, num_earlier]
    fits = along_usable & across_usable & ~jnp.any(clash, axis=1)
    # The first fit by a min and a mask: on a CPU, argmax and a gather cost more.
    tries = jnp.arange(len(words))
    chosen = tries == jnp.min(jnp.where(fits, tries, len(words)))
    return jnp.any(fits), jnp.sum(jnp.where(chosen[:, None], bows, 0), 0), jnp.any(chosen & down)


def _lay_out(
    words: jax.Array, board_size: int, ship_sizes: tuple[int, ...]
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each ship in turn at the first of its ``words`` [num_ships, tries] that fits beside the
    ships before it: (found [num_ships], bow [num_ships, 2], vertical [num_ships]). Where a ship
    found no place, the ships after it are placed beside a wrong one and must be laid again."""
    found, bow, vertical = [], [], []
    # Unrolled over the few ships, each checked against the ships before it only.
    for ship, size in enumerate(ship_sizes):
        earlier = (
            jnp.stack(bow) if bow else jnp.zeros((0, 2), jnp.int32),
            jnp.stack(vertical) if vertical else jnp.zeros((0,), bool),
            jnp.asarray(ship_sizes[:ship], jnp.int32),
        )
        ship_found, ship_bow, ship_vertical = _first_fit(words[ship], board_size, size, earlier)
        found.append(ship_found)
        bow.append(ship_bow)
        vertical.append(ship_vertical)
    return jnp.stack(found), jnp.stack(bow), jnp.stack(vertical)


def place_ships(
    key: jax.Array, board_size: int, ship_sizes: tuple[int, ...], tries: int = PLACEMENT_TRIES
) -> tuple[jax.Array, jax.Array]:
    """POPGym's layout law (module docstring): (bow [num_ships, 2], vertical [num_ships])."""
    draw_key, redraw_key = jax.random.split(key)
    num_ships = len(ship_sizes)
    words = random_words(draw_key, num_ships * tries).reshape(num_ships, tries)

    def redraw(carry):
        """New words for the first ship that found no place, then the layout again: ships
        before it keep their places, and each ship after it takes the first fit of its own
        words, which are independent of the redraw, so every ship keeps POPGym's law."""
        attempt, words, found, _, _ = carry
        ship = jnp.argmin(found)
        words = words.at[ship].set(random_words(jax.random.fold_in(redraw_key, attempt), tries))
        return (attempt + 1, words, *_lay_out(words, board_size, ship_sizes))

    # Rarely taken; under vmap the loop runs while any env redraws.
    first = (0, words, *_lay_out(words, board_size, ship_sizes))
    *_, bow, vertical = jax.lax.while_loop(lambda carry: ~jnp.all(carry[2]), redraw, first)
    return bow, vertical


class Battleship(CardGame):
    """Not a card game, but it shares CardGame's plumbing: name, default params and spaces."""

    def __init__(self, board_size: int = 10, ship_sizes: tuple[int, ...] = (2, 3, 3, 4)):
        # A placement's square is drawn from 15 random bits (place_ships).
        if not isinstance(board_size, int) or not 1 <= board_size <= 1024:
            raise ValueError(f"board_size ({board_size!r}) must be an integer in [1, 1024]")
        ship_sizes = tuple(ship_sizes)
        if not ship_sizes or any(
            not isinstance(s, int) or not 1 <= s <= board_size for s in ship_sizes
        ):
            raise ValueError(
                f"ship_sizes ({ship_sizes!r}) must be one or more integers in [1, board_size = "
                f"{board_size}]"
            )
        # Ships before the last touch sum(size + 1) rows and columns in all; below 2 * board_size
        # a whole row or column stays free, so every ship finds a place and the draw ends.
        if (
            sum(s + 1 for s in ship_sizes[:-1]) >= 2 * board_size
            or sum(ship_sizes) >= board_size**2
        ):
            raise ValueError(
                f"ship_sizes {ship_sizes} may not fit on a {board_size} x {board_size} board: "
                "use fewer or smaller ships, or a larger board_size"
            )
        self.board_size = board_size
        self.ship_sizes = ship_sizes
        self.episode_length = board_size**2
        self.obs_size = 2
        self.needed_hits = sum(ship_sizes)
        self.hit_reward = 1.0 / self.needed_hits
        self.miss_reward = -1.0 / (self.episode_length - self.needed_hits)

    @property
    def num_actions(self) -> int:
        return self.board_size**2

    def is_terminated(self, state: BattleshipState, params: environment.EnvParams) -> jax.Array:
        return jnp.sum(state.hit) == self.needed_hits

    def is_truncated(self, state: BattleshipState, params: environment.EnvParams) -> jax.Array:
        # POPGym's L steps are a time limit; a shorter max_steps_in_episode truncates earlier.
        limit = jnp.minimum(params.max_steps_in_episode, self.episode_length)
        return jnp.asarray(state.time >= limit)

    def reset_env(
        self, key: jax.Array, params: environment.EnvParams
    ) -> tuple[jax.Array, BattleshipState]:
        bow, vertical = place_ships(key, self.board_size, self.ship_sizes)
        state = BattleshipState(
            bow=bow,
            vertical=vertical,
            hit=jnp.zeros((len(self.ship_sizes), max(self.ship_sizes)), bool),
            last_hit=jnp.int32(0),
            time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: BattleshipState,
        action: int | jax.Array,
        params: environment.EnvParams,
    ) -> tuple[jax.Array, BattleshipState, jax.Array, jax.Array, dict]:
        shot = jnp.stack([action // self.board_size, action % self.board_size])  # (row, column)
        offset = shot - state.bow  # [num_ships, 2]
        along = jnp.where(state.vertical, offset[:, 0], offset[:, 1])
        across = jnp.where(state.vertical, offset[:, 1], offset[:, 0])
        sizes = jnp.asarray(self.ship_sizes)
        on_ship = (across == 0) & (along >= 0) & (along < sizes)  # [num_ships]
        square = jnp.arange(state.hit.shape[1]) == along[:, None]  # [num_ships, max size]
        new_hit = on_ship[:, None] & square & ~state.hit
        hit = jnp.any(new_hit)
        reward = jnp.where(hit, self.hit_reward, self.miss_reward).astype(jnp.float32)
        state = state.replace(
            hit=state.hit | new_hit, last_hit=hit.astype(jnp.int32), time=state.time + 1
        )
        return self.get_obs(state), state, reward, self.is_terminated(state, params), {}

    def get_obs(self, state: BattleshipState, params=None, key=None) -> jax.Array:
        return one_hot(state.last_hit, 2)

    def board(self, state: BattleshipState) -> jax.Array:
        """The ships' squares: [board_size, board_size] bool (for display and tests)."""
        rows, columns = jnp.mgrid[: self.board_size, : self.board_size]
        offset_row = rows[None] - state.bow[:, 0, None, None]
        offset_column = columns[None] - state.bow[:, 1, None, None]
        vertical = state.vertical[:, None, None]
        along = jnp.where(vertical, offset_row, offset_column)
        across = jnp.where(vertical, offset_column, offset_row)
        sizes = jnp.asarray(self.ship_sizes)[:, None, None]
        return jnp.any((across == 0) & (along >= 0) & (along < sizes), axis=0)


DIFFICULTIES = {
    "Easy": dict(board_size=8),
    "Medium": dict(board_size=10),
    "Hard": dict(board_size=12),
}
"""POPGym's settings, all with ships (2, 3, 3, 4): make("BattleshipHard") builds
Battleship(**DIFFICULTIES["Hard"])."""
