"""Episode replay buffers: sample contiguous sequences of one env's experience, uniformly or by
priority.

Storage is one circular buffer of ``row_length = max_length // add_batch_size`` time slots per
env row, written directly with scatters (not flashbax's trajectory buffer: we need our own reset
flags, per-slot priorities and a valid-start mask beside the data, and the write arithmetic is a
few lines). All rows are written at the same slots, so one ``write_index`` serves every row.

A sequence is the ``sample_sequence_length`` (L) items that follow a start slot in its row. A start
is valid when those L items are all written, chronologically consecutive and older than the write
head, so a sequence never splices the newest items onto the oldest after a wrap and never mixes
two rows. With ``sequence_starts="episode"`` a start must also be the first step of an episode
(its reset flag is True), so a recurrent model can start from its initial carry; with ``"any"``
every such slot is a start (store the carry in the experience and burn it in). Episodes may begin
inside a sequence: the sampled reset flags say where.

The prioritised buffer draws a start with probability ``priority ** priority_exponent`` over the
valid starts. It does not keep a sum tree: each ``sample`` takes a fresh cumulative sum over the
whole buffer, O(max_length) work per call, so no error accumulates across updates and a start
that is invalid or has priority 0 is never returned. The weights are computed as
``(priority / m) ** priority_exponent`` with ``m`` the largest priority among the drawable starts:
the same probabilities (up to float32 rounding), but no weight exceeds 1, so ``priority ** alpha``
overflowing float32 (alpha = 2, priorities 1e20) cannot turn every weight into inf.

Bad priorities neither poison nor bias the buffer: ``set_priorities`` replaces a non-finite
priority (NaN, +inf or -inf, e.g. from a diverged TD error, or one that overflows float32 when
cast) by the buffer's ``max_priority``, the priority a newly added item gets, and sets the sticky
``EpisodeBufferState.nonfinite_priority`` flag so a training loop can report the divergence.
``max_priority`` therefore stays finite and later items are still drawn.

``sample`` assumes ``can_sample(state)``; on a buffer with no valid start it returns arbitrary
slots with probability 0.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class EpisodeBufferState:
    experience: Any  # pytree, each leaf [add_batch_size, row_length, ...]
    reset: jax.Array  # [add_batch_size, row_length] bool: True where an item starts an episode
    priority: jax.Array  # [add_batch_size, row_length] float32 raw priorities of starts
    write_index: jax.Array  # int32 scalar: the slot the next item goes to, in every row
    num_added: jax.Array  # int32 scalar: items added per row so far (may exceed row_length)
    max_priority: jax.Array  # float32 scalar: largest finite priority ever set; new items get it
    nonfinite_priority: jax.Array  # bool scalar, sticky: set_priorities was ever given NaN or inf


@struct.dataclass
class EpisodeSample:
    experience: Any  # pytree, leaves [sample_batch_size, sample_sequence_length, ...]
    reset: jax.Array  # [sample_batch_size, sample_sequence_length] bool
    indices: jax.Array  # [sample_batch_size] int32 flat start index row * row_length + slot
    probabilities: jax.Array  # [sample_batch_size] float32: probability each start was drawn with
    num_starts: jax.Array  # int32 scalar: number of valid starts drawn from


@dataclass(frozen=True)
class EpisodeBuffer:
    """Pure functions over an ``EpisodeBufferState``; all of them jit and vmap."""

    init: Callable[[Any], EpisodeBufferState]
    """init(item): an empty buffer for items shaped like ``item`` (one step, no batch axes)."""
    add: Callable[[EpisodeBufferState, Any, jax.Array], EpisodeBufferState]
    """add(state, items, reset): leaves [add_batch_size, T, ...], reset [add_batch_size, T] bool."""
    sample: Callable[[EpisodeBufferState, jax.Array], EpisodeSample]
    """sample(state, key): sample_batch_size sequences, starts drawn independently."""
    can_sample: Callable[[EpisodeBufferState], jax.Array]
    """can_sample(state): min_length items are stored and at least one valid start exists."""
    valid_starts: Callable[[EpisodeBufferState], jax.Array]
    """valid_starts(state): [add_batch_size, row_length] bool."""
    set_priorities: Callable[[EpisodeBufferState, jax.Array, jax.Array], EpisodeBufferState]
    """set_priorities(state, indices, priorities): prioritised buffer only. A non-finite priority
    is stored as ``max_priority`` (after this call's finite priorities) and sets the sticky
    ``state.nonfinite_priority`` flag."""
    max_length: int
    min_length: int
    sample_batch_size: int
    sample_sequence_length: int
    add_batch_size: int
    row_length: int
    sequence_starts: Literal["episode", "any"]
    priority_exponent: float | None
    """None for the uniform buffer."""


def _init(
    item: Any, add_batch_size: int, row_length: int, initial_priority: float
) -> EpisodeBufferState:
    def storage(leaf):
        leaf = jnp.asarray(leaf)
        return jnp.zeros((add_batch_size, row_length, *leaf.shape), leaf.dtype)

    return EpisodeBufferState(
        experience=jax.tree.map(storage, item),
        reset=jnp.zeros((add_batch_size, row_length), bool),
        priority=jnp.full((add_batch_size, row_length), initial_priority, jnp.float32),
        write_index=jnp.zeros((), jnp.int32),
        num_added=jnp.zeros((), jnp.int32),
        max_priority=jnp.ones((), jnp.float32),
        nonfinite_priority=jnp.zeros((), bool),
    )


def _add(
    state: EpisodeBufferState, items: Any, reset: jax.Array, add_batch_size: int, row_length: int
) -> EpisodeBufferState:
    reset = jnp.asarray(reset)
    if reset.ndim != 2 or reset.shape[0] != add_batch_size or not 1 <= reset.shape[1] <= row_length:
        raise ValueError(
            f"add: reset has shape {reset.shape}; it must be [add_batch_size ({add_batch_size}), T]"
            f" with 1 <= T <= row_length ({row_length}), and items' leaves [add_batch_size, T, ...]"
        )
    num_steps = reset.shape[1]
    slots = (state.write_index + jnp.arange(num_steps)) % row_length  # a long add wraps around

    def write(stored, new):
        if new.shape[:2] != reset.shape:
            raise ValueError(f"add: an item leaf has shape {new.shape}; expected {reset.shape}+...")
        return stored.at[:, slots].set(new.astype(stored.dtype))

    return state.replace(
        experience=jax.tree.map(write, state.experience, items),
        reset=state.reset.at[:, slots].set(reset.astype(bool)),
        priority=state.priority.at[:, slots].set(state.max_priority),
        write_index=(state.write_index + num_steps) % row_length,
        num_added=state.num_added + num_steps,
    )


def _valid_starts(
    state: EpisodeBufferState, row_length: int, sequence_length: int, sequence_starts: str
) -> jax.Array:
    num_present = jnp.minimum(state.num_added, row_length)
    oldest = jnp.where(state.num_added >= row_length, state.write_index, 0)
    age_rank = jnp.mod(jnp.arange(row_length) - oldest, row_length)  # 0 = oldest item present
    fits = age_rank + sequence_length <= num_present  # [row_length]
    valid = jnp.broadcast_to(fits, state.reset.shape)
    if sequence_starts == "episode":
        valid = valid & state.reset
    return valid


def _can_sample(
    state: EpisodeBufferState,
    valid_starts: Callable,
    min_length: int,
    row_length: int,
    add_batch_size: int,
) -> jax.Array:
    # Count stored items, not added ones, so the product cannot overflow int32.
    num_stored = jnp.minimum(state.num_added, row_length) * add_batch_size
    return (num_stored >= min_length) & jnp.any(valid_starts(state))


def _sample_at(
    state: EpisodeBufferState,
    starts: jax.Array,
    probabilities: jax.Array,
    num_starts: jax.Array,
    row_length: int,
    sequence_length: int,
) -> EpisodeSample:
    """The sequences that begin at flat ``starts``, with how they were drawn."""
    rows = (starts // row_length)[:, None]
    slots = (starts % row_length)[:, None] + jnp.arange(sequence_length)
    slots = slots % row_length  # [sample_batch_size, sequence_length]
    return EpisodeSample(
        experience=jax.tree.map(lambda leaf: leaf[rows, slots], state.experience),
        reset=state.reset[rows, slots],
        indices=starts,
        probabilities=probabilities,
        num_starts=num_starts,
    )


def _sample_uniform(
    state: EpisodeBufferState,
    key: jax.Array,
    valid_starts: Callable,
    sample_batch_size: int,
    row_length: int,
    sequence_length: int,
) -> EpisodeSample:
    valid = valid_starts(state).reshape(-1)
    counts = jnp.cumsum(valid.astype(jnp.int32))  # exact, so rank r maps to the r-th valid start
    num_starts = counts[-1]
    ranks = jax.random.randint(key, (sample_batch_size,), 0, num_starts)
    starts = jnp.searchsorted(counts, ranks, side="right").astype(jnp.int32)
    starts = jnp.minimum(starts, valid.size - 1)
    probabilities = jnp.full(starts.shape, 1.0, jnp.float32) / num_starts
    probabilities = jnp.where(valid[starts], probabilities, 0.0)
    return _sample_at(state, starts, probabilities, num_starts, row_length, sequence_length)


def _select_proportional(weights: jax.Array, targets: jax.Array) -> jax.Array:
    """Flat indices i with cumsum(weights)[i - 1] <= target < cumsum(weights)[i], for weights >= 0
    with at least one positive entry. Rounding can land a target on an index of weight 0 (a target
    equal to the total, or a parallel cumsum that is not exactly flat across zeros): those go to the
    nearest positive entry before them, or the first positive entry if there is none."""
    cumulative = jnp.cumsum(weights)
    indices = jnp.searchsorted(cumulative, targets, side="right")
    indices = jnp.minimum(indices, weights.size - 1)
    positive = weights > 0
    last_positive_so_far = jax.lax.cummax(jnp.where(positive, jnp.arange(weights.size), -1))
    fallback = jnp.where(
        last_positive_so_far[indices] >= 0, last_positive_so_far[indices], jnp.argmax(positive)
    )
    return jnp.where(positive[indices], indices, fallback).astype(jnp.int32)


def _sample_prioritised(
    state: EpisodeBufferState,
    key: jax.Array,
    valid_starts: Callable,
    priority_exponent: float,
    sample_batch_size: int,
    row_length: int,
    sequence_length: int,
) -> EpisodeSample:
    valid = valid_starts(state).reshape(-1)
    priority = state.priority.reshape(-1)
    # `priority > 0` also drops negative and NaN priorities, and keeps 0 ** 0 = 1 out at alpha = 0.
    # set_priorities never stores a non-finite priority; `isfinite` keeps a hand-written inf out.
    drawable = valid & (priority > 0) & jnp.isfinite(priority)
    # Divide by the largest drawable priority before the power: p ** a / sum p ** a is unchanged,
    # but every weight lies in (0, 1] (the largest is exactly 1), so nothing overflows float32.
    largest = jnp.max(jnp.where(drawable, priority, 0.0))
    scaled = priority / jnp.where(largest > 0, largest, 1.0)
    weights = jnp.where(drawable, scaled**priority_exponent, 0.0)
    # No drawable start (priorities all 0): fall back to uniform over valid starts.
    weights = jnp.where(jnp.any(weights > 0), weights, valid.astype(jnp.float32))
    total = jnp.sum(weights)
    targets = jax.random.uniform(key, (sample_batch_size,)) * total
    starts = _select_proportional(weights, targets)
    # A start whose share underflows float32 was still drawn: report the smallest normal instead of
    # 0 so importance weights stay finite.
    probabilities = jnp.maximum(weights[starts] / total, jnp.finfo(jnp.float32).tiny)
    probabilities = jnp.where(weights[starts] > 0, probabilities, 0.0)
    num_starts = jnp.sum(valid, dtype=jnp.int32)
    return _sample_at(state, starts, probabilities, num_starts, row_length, sequence_length)


def _set_priorities(
    state: EpisodeBufferState, indices: jax.Array, priorities: jax.Array
) -> EpisodeBufferState:
    """Set the raw priorities (>= 0) of the starts at flat ``indices`` (a sample's).

    A non-finite priority (NaN, +-inf, or a value that overflows float32) says nothing about how
    useful its sequence is, so it is treated like a new item's: it is stored as ``max_priority``,
    the largest finite priority set so far including this call's, and ``nonfinite_priority`` is set
    (and stays set). Zero or clamping to a large value would instead never draw the sequence again
    or make it crowd out every other one."""
    priorities = jnp.asarray(priorities, jnp.float32).reshape(-1)
    finite = jnp.isfinite(priorities)
    max_priority = jnp.maximum(
        state.max_priority, jnp.max(jnp.where(finite, priorities, -jnp.inf), initial=-jnp.inf)
    )
    priorities = jnp.where(finite, priorities, max_priority)
    flat = state.priority.reshape(-1).at[jnp.asarray(indices).reshape(-1)].set(priorities)
    return state.replace(
        priority=flat.reshape(state.priority.shape),
        max_priority=max_priority,
        nonfinite_priority=state.nonfinite_priority | ~jnp.all(finite),
    )


def _no_priorities(state: EpisodeBufferState, indices: jax.Array, priorities: jax.Array):
    raise TypeError(
        "set_priorities: the uniform episode buffer has no priorities; "
        "use make_prioritised_episode_buffer"
    )


def _check_config(
    max_length: int,
    min_length: int,
    sample_batch_size: int,
    sample_sequence_length: int,
    add_batch_size: int,
    sequence_starts: str,
) -> int:
    sizes = {
        "max_length": max_length,
        "min_length": min_length,
        "sample_batch_size": sample_batch_size,
        "sample_sequence_length": sample_sequence_length,
        "add_batch_size": add_batch_size,
    }
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"{name} ({size}) must be at least 1")
    if max_length % add_batch_size != 0:
        raise ValueError(
            f"max_length ({max_length}) must be divisible by add_batch_size ({add_batch_size}): "
            f"each env row holds max_length // add_batch_size items"
        )
    row_length = max_length // add_batch_size
    if sample_sequence_length > row_length:
        raise ValueError(
            f"sample_sequence_length ({sample_sequence_length}) must be at most the row length "
            f"max_length // add_batch_size ({row_length}): raise max_length or shorten sequences"
        )
    if min_length > max_length:
        raise ValueError(f"min_length ({min_length}) must be at most max_length ({max_length})")
    if sequence_starts not in ("episode", "any"):
        raise ValueError(f"sequence_starts ({sequence_starts!r}) must be 'episode' or 'any'")
    return row_length


def _make(
    max_length: int,
    min_length: int,
    sample_batch_size: int,
    sample_sequence_length: int,
    add_batch_size: int,
    sequence_starts: Literal["episode", "any"],
    priority_exponent: float | None,
) -> EpisodeBuffer:
    row_length = _check_config(
        max_length,
        min_length,
        sample_batch_size,
        sample_sequence_length,
        add_batch_size,
        sequence_starts,
    )
    valid_starts = partial(
        _valid_starts,
        row_length=row_length,
        sequence_length=sample_sequence_length,
        sequence_starts=sequence_starts,
    )
    prioritised = priority_exponent is not None
    sizes = dict(
        sample_batch_size=sample_batch_size,
        row_length=row_length,
        sequence_length=sample_sequence_length,
    )
    if prioritised:
        sample = partial(
            _sample_prioritised,
            valid_starts=valid_starts,
            priority_exponent=priority_exponent,
            **sizes,
        )
    else:
        sample = partial(_sample_uniform, valid_starts=valid_starts, **sizes)
    return EpisodeBuffer(
        # Unwritten slots of the prioritised buffer have priority 0; the uniform one is all ones.
        init=partial(
            _init,
            add_batch_size=add_batch_size,
            row_length=row_length,
            initial_priority=0.0 if prioritised else 1.0,
        ),
        add=partial(_add, add_batch_size=add_batch_size, row_length=row_length),
        sample=sample,
        can_sample=partial(
            _can_sample,
            valid_starts=valid_starts,
            min_length=min_length,
            row_length=row_length,
            add_batch_size=add_batch_size,
        ),
        valid_starts=valid_starts,
        set_priorities=_set_priorities if prioritised else _no_priorities,
        max_length=max_length,
        min_length=min_length,
        sample_batch_size=sample_batch_size,
        sample_sequence_length=sample_sequence_length,
        add_batch_size=add_batch_size,
        row_length=row_length,
        sequence_starts=sequence_starts,
        priority_exponent=priority_exponent,
    )


def make_episode_buffer(
    max_length: int,
    min_length: int,
    sample_batch_size: int,
    sample_sequence_length: int,
    add_batch_size: int,
    sequence_starts: Literal["episode", "any"] = "episode",
) -> EpisodeBuffer:
    """A buffer that draws each sequence's start uniformly (with replacement) over valid starts.

    ``max_length`` and ``min_length`` count items over all ``add_batch_size`` env rows.
    """
    return _make(
        max_length,
        min_length,
        sample_batch_size,
        sample_sequence_length,
        add_batch_size,
        sequence_starts,
        priority_exponent=None,
    )


def make_prioritised_episode_buffer(
    max_length: int,
    min_length: int,
    sample_batch_size: int,
    sample_sequence_length: int,
    add_batch_size: int,
    sequence_starts: Literal["episode", "any"] = "episode",
    priority_exponent: float = 0.6,
) -> EpisodeBuffer:
    """A buffer that draws a start with probability ∝ priority ** priority_exponent (alpha) over
    valid starts (Schaul et al. 2016). New items get the largest priority set so far; a start of
    priority 0 is never drawn unless every valid start has priority 0 (then uniform).

    ``set_priorities`` stores a NaN or infinite priority as ``max_priority`` and sets the sticky
    ``state.nonfinite_priority`` flag (fold it into a divergence check); sampling stays exact for
    priorities up to float32's largest, whatever the exponent. ``priority_exponent`` may be an
    array traced in a compiled sweep; only a number is checked here.
    """
    if isinstance(priority_exponent, int | float) and priority_exponent < 0:
        raise ValueError(
            f"priority_exponent ({priority_exponent}) must be >= 0 (0 = uniform, 1 = proportional)"
        )
    return _make(
        max_length,
        min_length,
        sample_batch_size,
        sample_sequence_length,
        add_batch_size,
        sequence_starts,
        priority_exponent=priority_exponent,
    )


def compute_importance_weights(
    probabilities: jax.Array, buffer_size: jax.Array | int, beta: float
) -> jax.Array:
    """PER's importance weights (buffer_size * p) ** -beta, divided by their maximum over the batch
    so the largest is 1. Pass ``sample.num_starts`` as ``buffer_size``."""
    weights = (jnp.asarray(buffer_size, jnp.float32) * probabilities) ** (-beta)
    return weights / jnp.max(weights)


def sequence_priority(
    td_errors: jax.Array, eta: float = 0.9, mask: jax.Array | None = None
) -> jax.Array:
    """R2D2's sequence priority eta * max_t |td| + (1 - eta) * mean_t |td|: [B, L] -> [B].

    ``mask`` [B, L] keeps only the steps where it is True (e.g. to drop burn-in steps); a row with
    no kept step gets priority 0.
    """
    magnitude = jnp.abs(td_errors)
    if mask is None:
        mask = jnp.ones(magnitude.shape, bool)
    magnitude = jnp.where(mask, magnitude, 0.0)
    count = jnp.maximum(jnp.sum(mask, axis=-1), 1)
    return eta * jnp.max(magnitude, axis=-1) + (1.0 - eta) * jnp.sum(magnitude, axis=-1) / count
