"""Episode buffers against a brute-force record: every sampled sequence is a contiguous, valid
slice of one row's chronological experience; sampling frequencies and reported probabilities
follow the uniform and prioritised rules; priorities, importance weights and config errors;
non-finite and float32-overflowing priorities against the same brute force."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from memorax.buffers import (
    compute_importance_weights,
    make_episode_buffer,
    make_prioritised_episode_buffer,
    sequence_priority,
)
from memorax.buffers.episode_buffer import _select_proportional

ITEM = {"id": jnp.int32(0), "obs": jnp.zeros(2, jnp.float32)}


def make_items(ids: np.ndarray) -> dict:
    """An item pytree whose leaves both identify the step: id [B, T], obs [B, T, 2]."""
    return {"id": jnp.asarray(ids, jnp.int32), "obs": jnp.asarray(np.stack([ids, -ids], -1))}


class Record:
    """Everything added to each row, in order, plus the priorities the rules say each slot has."""

    def __init__(self, add_batch_size: int, row_length: int):
        self.row_length = row_length
        self.ids = [[] for _ in range(add_batch_size)]
        self.resets = [[] for _ in range(add_batch_size)]
        self.priority = np.zeros((add_batch_size, row_length))
        self.max_priority = 1.0

    def add(self, ids: np.ndarray, reset: np.ndarray) -> None:
        for row in range(len(self.ids)):
            for step in range(ids.shape[1]):
                self.priority[row, len(self.ids[row]) % self.row_length] = self.max_priority
                self.ids[row].append(int(ids[row, step]))
                self.resets[row].append(bool(reset[row, step]))

    def set_priorities(self, priority: np.ndarray) -> None:
        """The documented rule: a non-finite priority is stored as max_priority, the largest finite
        priority set so far (this call's included)."""
        finite = np.isfinite(priority)
        if finite.any():
            self.max_priority = max(self.max_priority, float(priority[finite].max()))
        self.priority = np.where(finite, priority, self.max_priority)

    def expected(self, sequence_length: int, sequence_starts: str):
        """valid [B, R] and each valid start's ids and resets [B, R, L], by global step index."""
        shape = (len(self.ids), self.row_length)
        valid = np.zeros(shape, bool)
        windows = np.full((*shape, sequence_length), -1)
        window_resets = np.zeros((*shape, sequence_length), bool)
        for row, (ids, resets) in enumerate(zip(self.ids, self.resets, strict=True)):
            oldest_present = max(0, len(ids) - self.row_length)
            for step in range(oldest_present, len(ids) - sequence_length + 1):
                if sequence_starts == "episode" and not resets[step]:
                    continue
                slot = step % self.row_length
                valid[row, slot] = True
                windows[row, slot] = ids[step : step + sequence_length]
                window_resets[row, slot] = resets[step : step + sequence_length]
        return valid, windows, window_resets


@functools.cache
def jitted_sample_over_keys(buffer):
    return jax.jit(jax.vmap(buffer.sample, in_axes=(None, 0)))


def sample_many(buffer, state, key, num_keys: int):
    """num_keys independent sample() calls in one jitted vmap, flattened to [num_keys * S, ...]."""
    sample = jitted_sample_over_keys(buffer)(state, jax.random.split(key, num_keys))
    return jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:]), sample), sample


def check_against_record(buffer, state, record: Record, key, num_keys: int = 32):
    length = buffer.sample_sequence_length
    valid, windows, window_resets = record.expected(length, buffer.sequence_starts)
    np.testing.assert_array_equal(np.asarray(buffer.valid_starts(state)), valid)
    if not valid.any():
        assert not bool(buffer.can_sample(state))
        return
    flat, batched = sample_many(buffer, state, key, num_keys)
    starts = flat.indices
    flat_valid = valid.reshape(-1)
    assert flat_valid[starts].all(), "sampled a start the brute force says is invalid"
    expected_ids = windows.reshape(-1, length)[starts]
    np.testing.assert_array_equal(flat.experience["id"], expected_ids)
    np.testing.assert_array_equal(flat.experience["obs"][..., 0], expected_ids)
    np.testing.assert_array_equal(flat.experience["obs"][..., 1], -expected_ids)
    np.testing.assert_array_equal(flat.reset, window_resets.reshape(-1, length)[starts])
    assert set(starts.tolist()) == set(np.flatnonzero(flat_valid).tolist()), "starts not covered"
    np.testing.assert_array_equal(np.asarray(batched.num_starts), flat_valid.sum())
    if buffer.priority_exponent is None:
        expected_probability = np.full(flat_valid.shape, 1.0 / flat_valid.sum())
    else:
        weights = np.where(flat_valid, record.priority.reshape(-1) ** buffer.priority_exponent, 0)
        expected_probability = weights / weights.sum()
    np.testing.assert_allclose(flat.probabilities, expected_probability[starts], rtol=1e-5)


@pytest.mark.parametrize("prioritised", [False, True], ids=["uniform", "prioritised"])
@pytest.mark.parametrize("sequence_starts", ["episode", "any"])
def test_samples_match_brute_force_across_wraps(sequence_starts, prioritised):
    add_batch_size, row_length, length = 3, 12, 4
    config = dict(
        max_length=add_batch_size * row_length,
        min_length=1,
        sample_batch_size=64,
        sample_sequence_length=length,
        add_batch_size=add_batch_size,
        sequence_starts=sequence_starts,
    )
    if prioritised:
        buffer = make_prioritised_episode_buffer(**config, priority_exponent=0.7)
    else:
        buffer = make_episode_buffer(**config)
    rng = np.random.default_rng(0)
    record = Record(add_batch_size, row_length)
    state = buffer.init(ITEM)
    add = jax.jit(buffer.add)
    key = jax.random.key(0)
    steps = np.zeros(add_batch_size, int)
    # Adds of varying length, a full-row add and a one-step add among them: about six wraps.
    for num_steps in [5, 12, 1, 7, 3, 12, 9, 2, 11, 4, 6, 1]:
        ids = 1000 * np.arange(add_batch_size)[:, None] + steps[:, None] + np.arange(num_steps)
        steps += num_steps
        reset = rng.random((add_batch_size, num_steps)) < 0.3
        state = add(state, make_items(ids), jnp.asarray(reset))
        record.add(ids, reset)
        if prioritised:
            priority = rng.uniform(0.5, 2.0, record.priority.shape).astype(np.float32)
            state = buffer.set_priorities(state, jnp.arange(priority.size), priority.reshape(-1))
            record.set_priorities(priority)
        key, check_key = jax.random.split(key)
        check_against_record(buffer, state, record, check_key)
    assert int(state.num_added) == steps[0] > 5 * row_length


@pytest.mark.parametrize("sequence_starts", ["episode", "any"])
def test_sequences_never_cross_the_write_head(sequence_starts):
    # One row of 10 slots holding items 2..11 after a wrap: slots 0, 1 hold the newest items 10, 11
    # and slot 2 the oldest, 2. A start at slot 9 would read 9, 10, 11, 2.
    buffer = make_episode_buffer(10, 1, 256, 4, 1, sequence_starts=sequence_starts)
    reset = np.zeros((1, 12), bool)
    reset[0, [0, 5, 9]] = True
    state = buffer.init(ITEM)
    for part in (slice(0, 6), slice(6, 12)):
        ids = np.arange(12)[None, part]
        state = buffer.add(state, make_items(ids), jnp.asarray(reset[:, part]))
    valid = np.asarray(buffer.valid_starts(state))[0]
    expected = [5] if sequence_starts == "episode" else [2, 3, 4, 5, 6, 7, 8]
    assert np.flatnonzero(valid).tolist() == expected
    sample = buffer.sample(state, jax.random.key(0))
    ids = np.asarray(sample.experience["id"])
    assert (np.diff(ids, axis=1) == 1).all()
    assert set(ids[:, 0].tolist()) == set(expected)


def filled_buffer(buffer, num_steps: int, reset_every: int = 1):
    """One add of num_steps (<= row_length) items per row; ids count up from 0 per row."""
    ids = np.tile(np.arange(num_steps), (buffer.add_batch_size, 1))
    reset = ids % reset_every == 0
    return buffer.add(buffer.init(ITEM), make_items(ids), jnp.asarray(reset))


def start_counts(buffer, state, num_keys: int, key=0) -> np.ndarray:
    flat, _ = sample_many(buffer, state, jax.random.key(key), num_keys)
    return np.bincount(flat.indices, minlength=buffer.max_length), flat


def test_uniform_frequencies():
    buffer = make_episode_buffer(32, 1, 256, 3, 2, sequence_starts="any")
    state = filled_buffer(buffer, 16)
    counts, flat = start_counts(buffer, state, 80)
    valid = np.asarray(buffer.valid_starts(state)).reshape(-1)
    assert valid.sum() == 28 and counts[~valid].sum() == 0
    assert stats.chisquare(counts[valid]).pvalue > 1e-4
    np.testing.assert_allclose(flat.probabilities, 1 / 28, rtol=1e-6)


@pytest.mark.parametrize("priority_exponent", [0.0, 0.6, 1.0])
def test_prioritised_frequencies_follow_priorities(priority_exponent):
    buffer = make_prioritised_episode_buffer(
        64, 1, 256, 3, 2, sequence_starts="episode", priority_exponent=priority_exponent
    )
    state = filled_buffer(buffer, 32, reset_every=2)
    valid = np.asarray(buffer.valid_starts(state)).reshape(-1)
    rng = np.random.default_rng(1)
    priority = rng.uniform(0.1, 10.0, valid.size).astype(np.float32)
    priority[~valid] = 100.0  # invalid starts carry large priorities that must be ignored
    priority[np.flatnonzero(valid)[::5]] = 0.0  # and some valid starts have priority 0
    state = buffer.set_priorities(state, jnp.arange(valid.size), jnp.asarray(priority))
    counts, flat = start_counts(buffer, state, 80)
    weights = np.where(valid & (priority > 0), priority.astype(np.float64) ** priority_exponent, 0)
    expected = weights / weights.sum()
    assert counts[expected == 0].sum() == 0, "sampled an invalid or zero-priority start"
    drawn = expected > 0
    result = stats.chisquare(counts[drawn], expected[drawn] * counts.sum())
    assert result.pvalue > 1e-4
    np.testing.assert_allclose(flat.probabilities, expected[flat.indices], rtol=1e-5)
    assert np.asarray(buffer.sample(state, jax.random.key(0)).num_starts) == valid.sum()


@pytest.mark.parametrize("sequence_starts", ["episode", "any"])
def test_extreme_priorities_never_give_an_invalid_sample(sequence_starts):
    buffer = make_prioritised_episode_buffer(
        1024, 1, 512, 8, 4, sequence_starts=sequence_starts, priority_exponent=1.0
    )
    state = filled_buffer(buffer, 256, reset_every=3)
    valid = np.asarray(buffer.valid_starts(state)).reshape(-1)
    rng = np.random.default_rng(2)
    cases = {
        "mixed": rng.choice(np.array([0.0, 1e-8, 1e8], np.float32), valid.size),
        "one tiny": np.where(np.arange(valid.size) == np.flatnonzero(valid)[-1], 1e-8, 0.0),
        "one tiny, huge invalid": np.where(valid, 0.0, 1e8) + (np.arange(valid.size) == 3) * 1e-8,
    }
    for name, priority in cases.items():
        priority = priority.astype(np.float32)
        state = buffer.set_priorities(state, jnp.arange(valid.size), jnp.asarray(priority))
        flat, _ = sample_many(buffer, state, jax.random.key(3), 16)
        assert valid[flat.indices].all(), name
        assert (priority[flat.indices] > 0).all(), name
        assert (flat.probabilities > 0).all(), name
        weights = compute_importance_weights(jnp.asarray(flat.probabilities), valid.sum(), 0.4)
        assert np.isfinite(np.asarray(weights)).all(), name
    np.testing.assert_allclose(flat.probabilities, 1.0)  # the last case has a single start


def test_all_zero_priorities_fall_back_to_uniform():
    buffer = make_prioritised_episode_buffer(32, 1, 256, 3, 2, sequence_starts="any")
    state = filled_buffer(buffer, 16)
    state = buffer.set_priorities(state, jnp.arange(32), jnp.zeros(32))
    counts, flat = start_counts(buffer, state, 40)
    valid = np.asarray(buffer.valid_starts(state)).reshape(-1)
    assert counts[~valid].sum() == 0 and (counts[valid] > 0).all()
    np.testing.assert_allclose(flat.probabilities, 1 / valid.sum(), rtol=1e-6)


def test_proportional_selection_guards_float_edges():
    weights = jnp.array([0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0])
    targets = jnp.array([0.0, 0.999, 1.0, 2.999, 3.0, 1e9])
    # A target at (or past) the total lands on trailing zeros: it goes to the last positive entry.
    assert _select_proportional(weights, targets).tolist() == [1, 1, 4, 4, 4, 4]
    assert _select_proportional(jnp.array([0.0, 0.0, 5.0]), jnp.array([0.0, 5.0])).tolist() == [
        2,
        2,
    ]


def test_new_items_get_the_float_max_priority():
    buffer = make_prioritised_episode_buffer(20, 1, 4, 2, 2, sequence_starts="any")
    state = filled_buffer(buffer, 3)
    np.testing.assert_array_equal(np.asarray(state.priority)[:, :3], 1.0)
    state = buffer.set_priorities(state, jnp.array([0, 1]), jnp.array([2.5, 0.1]))
    state = buffer.set_priorities(state, jnp.array([2]), jnp.array([0.3]))  # max never decreases
    assert float(state.max_priority) == 2.5
    state = buffer.add(state, make_items(np.full((2, 4), 7)), jnp.zeros((2, 4), bool))
    np.testing.assert_array_equal(np.asarray(state.priority)[:, 3:7], 2.5)
    np.testing.assert_array_equal(
        np.asarray(state.priority)[0, :3], np.array([2.5, 0.1, 0.3], np.float32)
    )


def test_importance_weights_match_numpy():
    probabilities = np.random.default_rng(4).uniform(1e-4, 0.1, 16).astype(np.float32)
    weights = compute_importance_weights(jnp.asarray(probabilities), 37, beta=0.4)
    expected = (37 * probabilities.astype(np.float64)) ** -0.4
    np.testing.assert_allclose(np.asarray(weights), expected / expected.max(), rtol=1e-5)
    assert float(jnp.max(weights)) == pytest.approx(1.0)


def test_sequence_priority_matches_numpy():
    rng = np.random.default_rng(5)
    td_errors = rng.normal(size=(4, 6)).astype(np.float32)
    mask = rng.random((4, 6)) < 0.6
    mask[0] = False
    mask[1, 2] = True
    for eta in (0.9, 0.3):
        expected = [eta * np.abs(row).max() + (1 - eta) * np.abs(row).mean() for row in td_errors]
        got = sequence_priority(jnp.asarray(td_errors), eta)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
        expected_masked = [
            eta * np.abs(row[keep]).max() + (1 - eta) * np.abs(row[keep]).mean()
            if keep.any()
            else 0
            for row, keep in zip(td_errors, mask, strict=True)
        ]
        got = sequence_priority(jnp.asarray(td_errors), eta, mask=jnp.asarray(mask))
        np.testing.assert_allclose(np.asarray(got), expected_masked, rtol=1e-6)


def test_different_keys_give_different_samples():
    buffer = make_prioritised_episode_buffer(64, 1, 8, 3, 2, sequence_starts="any")
    state = filled_buffer(buffer, 32)
    uniform = make_episode_buffer(64, 1, 8, 3, 2, sequence_starts="any")
    for buf in (buffer, uniform):
        first = buf.sample(state, jax.random.key(0)).indices
        again = buf.sample(state, jax.random.key(0)).indices
        other = buf.sample(state, jax.random.key(1)).indices
        np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
        assert not np.array_equal(np.asarray(first), np.asarray(other))
        assert len(set(np.asarray(first).tolist())) > 1  # starts in one batch are independent


def test_can_sample_needs_min_length_and_a_valid_start():
    buffer = make_episode_buffer(40, 16, 4, 3, 4, sequence_starts="episode")
    state = buffer.init(ITEM)
    state = buffer.add(state, make_items(np.zeros((4, 3))), jnp.ones((4, 3), bool))
    assert not bool(buffer.can_sample(state))  # valid starts, but 12 items < min_length 16
    state = buffer.add(state, make_items(np.zeros((4, 1))), jnp.ones((4, 1), bool))
    assert bool(buffer.can_sample(state))
    no_episode_starts = filled_buffer(buffer, 10, reset_every=11)  # resets only at each row's 0
    assert bool(buffer.can_sample(no_episode_starts))
    no_episode_starts = buffer.add(
        no_episode_starts, make_items(np.zeros((4, 1))), jnp.zeros((4, 1), bool)
    )
    assert not bool(
        buffer.can_sample(no_episode_starts)
    )  # full, but the only starts were overwritten


CONFIG = dict(
    max_length=64, min_length=8, sample_batch_size=4, sample_sequence_length=4, add_batch_size=4
)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (dict(max_length=62), "max_length"),
        (dict(sample_sequence_length=17), "sample_sequence_length"),
        (dict(sample_batch_size=0), "sample_batch_size"),
        (dict(add_batch_size=0), "add_batch_size"),
        (dict(min_length=65), "min_length"),
        (dict(sequence_starts="episodes"), "sequence_starts"),
        (dict(priority_exponent=-0.5), "priority_exponent"),
    ],
)
def test_config_errors_name_the_argument(change, named):
    with pytest.raises(ValueError, match=named):
        make_prioritised_episode_buffer(**{**CONFIG, **change})
    if named != "priority_exponent":
        with pytest.raises(ValueError, match=named):
            make_episode_buffer(**{**CONFIG, **change})


def test_bad_adds_and_uniform_set_priorities_raise():
    buffer = make_episode_buffer(**CONFIG)
    state = buffer.init(ITEM)
    with pytest.raises(ValueError, match="row_length"):
        buffer.add(state, make_items(np.zeros((4, 17))), jnp.zeros((4, 17), bool))
    with pytest.raises(ValueError, match="add_batch_size"):
        buffer.add(state, make_items(np.zeros((3, 2))), jnp.zeros((3, 2), bool))
    with pytest.raises(TypeError, match="make_prioritised_episode_buffer"):
        jax.jit(buffer.set_priorities)(state, jnp.array([0]), jnp.array([1.0]))


def test_jit_vmap_scan_over_seeds_matches_unbatched():
    buffer = make_prioritised_episode_buffer(
        48, 1, 4, 4, 2, sequence_starts="episode", priority_exponent=0.6
    )

    def run(key):
        def step(state, step_key):
            reset_key, sample_key, priority_key = jax.random.split(step_key, 3)
            ids = state.num_added + jnp.zeros((2, 3), jnp.int32) + jnp.arange(3)
            items = {"id": ids, "obs": jnp.stack([ids, -ids], -1).astype(jnp.float32)}
            reset = jax.random.bernoulli(reset_key, 0.4, (2, 3))
            state = buffer.add(state, items, reset)
            sample = buffer.sample(state, sample_key)
            priorities = jax.random.uniform(priority_key, (4,), minval=0.1, maxval=3.0)
            state = jax.lax.cond(
                buffer.can_sample(state),
                lambda: buffer.set_priorities(state, sample.indices, priorities),
                lambda: state,
            )
            return state, (sample.indices, sample.experience["id"], sample.probabilities)

        return jax.lax.scan(step, buffer.init(ITEM), jax.random.split(key, 20))

    keys = jax.random.split(jax.random.key(6), 3)
    batched = jax.jit(jax.vmap(run))(keys)
    single = jax.jit(run)
    for seed in range(3):
        jax.tree.map(
            lambda b, s, seed=seed: np.testing.assert_array_equal(np.asarray(b)[seed], s),
            batched,
            single(keys[seed]),
        )


def test_docs_api_as_written():
    """memorax-docs/core-concepts.md's buffer snippets, with a filled buffer in between."""
    from memorax.buffers import (
        compute_importance_weights,
        make_episode_buffer,
        make_prioritised_episode_buffer,
    )

    sizes = dict(max_length=100_000, min_length=1000, sample_batch_size=32,
                 sample_sequence_length=16, add_batch_size=8)  # fmt: skip
    assert make_episode_buffer(**sizes).row_length == 12_500
    buffer = make_prioritised_episode_buffer(**sizes, priority_exponent=0.6)
    item = {"observation": jnp.zeros(3), "reward": jnp.zeros(())}
    state = buffer.init(item)
    steps = jax.tree.map(lambda x: jnp.ones((8, 200) + x.shape), item)
    reset = jnp.zeros((8, 200), bool).at[:, ::50].set(True)
    state = buffer.add(state, steps, reset)
    assert bool(buffer.can_sample(state))
    key = jax.random.key(0)
    sample = buffer.sample(state, key)
    buffer_size = sample.num_starts
    weights = compute_importance_weights(sample.probabilities, buffer_size, beta=0.4)
    assert float(weights.max()) == pytest.approx(1.0)
    td_errors = jnp.arange(32.0)
    state = buffer.set_priorities(state, sample.indices, jnp.abs(td_errors) + 1e-6)
    flat = state.priority.reshape(-1)[sample.indices]
    assert bool(jnp.all(sample.reset[:, 0]))  # the docs' buffer starts at episode starts
    assert float(state.max_priority) == pytest.approx(31.0 + 1e-6)
    assert float(flat.max()) == pytest.approx(31.0 + 1e-6)


def exact_probabilities(priority: np.ndarray, valid: np.ndarray, alpha: float) -> np.ndarray:
    """priority ** alpha / its sum over valid positive starts, in float64 (1e20 ** 2 is finite)."""
    priority = priority.astype(np.float64)
    weights = np.where(valid & (priority > 0), priority**alpha, 0.0)
    return weights / weights.sum()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_nonfinite_priority_neither_poisons_nor_biases_the_buffer(bad):
    add_batch_size, row_length, length = 2, 16, 3
    buffer = make_prioritised_episode_buffer(
        add_batch_size * row_length, 1, 128, length, add_batch_size, "any", priority_exponent=0.7
    )
    record = Record(add_batch_size, row_length)
    ids = 100 * np.arange(add_batch_size)[:, None] + np.arange(8)
    reset = np.zeros(ids.shape, bool)
    state = buffer.add(buffer.init(ITEM), make_items(ids), jnp.asarray(reset))
    record.add(ids, reset)
    assert not bool(state.nonfinite_priority)
    priority = np.random.default_rng(7).uniform(0.5, 3.0, record.priority.shape).astype(np.float32)
    priority[0, 2] = bad  # one diverged TD error, at a valid start
    set_priorities = jax.jit(buffer.set_priorities)
    state = set_priorities(state, jnp.arange(priority.size), jnp.asarray(priority.reshape(-1)))
    record.set_priorities(priority)
    largest = priority[np.isfinite(priority)].max()
    assert float(state.max_priority) == record.max_priority == largest
    assert bool(state.nonfinite_priority)
    np.testing.assert_array_equal(np.asarray(state.priority), record.priority)
    assert float(state.priority[0, 2]) == largest
    check_against_record(buffer, state, record, jax.random.key(8))

    # Items added afterwards get the finite max_priority and are drawn by the same rule.
    new_ids = ids[:, -1:] + 1 + np.arange(6)
    state = buffer.add(state, make_items(new_ids), jnp.zeros(new_ids.shape, bool))
    record.add(new_ids, np.zeros(new_ids.shape, bool))
    np.testing.assert_array_equal(np.asarray(state.priority)[:, 8:14], largest)
    check_against_record(buffer, state, record, jax.random.key(9))  # covers every valid start
    flat, _ = sample_many(buffer, state, jax.random.key(10), 32)
    assert np.isin(flat.experience["id"][:, 0], new_ids).any(), "items added later never drawn"

    # The flag is sticky: later finite priorities do not clear it, and max_priority stays finite.
    state = set_priorities(state, jnp.array([0, 1]), jnp.array([1.0, 2.0]))
    assert bool(state.nonfinite_priority) and np.isfinite(float(state.max_priority))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_nonfinite_priorities_only_and_overflowing_casts():
    buffer = make_prioritised_episode_buffer(20, 1, 4, 2, 2, sequence_starts="any")
    state = filled_buffer(buffer, 5)
    state = buffer.set_priorities(state, jnp.array([0, 1]), jnp.array([2.0, 0.5]))
    # A call with no finite priority keeps max_priority; a float64 1e40 overflows float32 to inf.
    for bad in (jnp.array([jnp.nan, jnp.inf]), np.array([1e40, -1e40])):
        bad_state = buffer.set_priorities(state, jnp.array([2, 3]), bad)
        assert bool(bad_state.nonfinite_priority) and float(bad_state.max_priority) == 2.0
        np.testing.assert_array_equal(np.asarray(bad_state.priority)[0, :4], [2.0, 0.5, 2.0, 2.0])
    # The flag under vmap: per seed.
    batched = jax.vmap(buffer.set_priorities, in_axes=(None, None, 0))(
        state, jnp.array([2]), jnp.array([[1.0], [jnp.nan]])
    )
    assert np.asarray(batched.nonfinite_priority).tolist() == [False, True]
    np.testing.assert_array_equal(np.asarray(batched.max_priority), [2.0, 2.0])


# Probabilities from float32 sampling against float64: p / max rounds once (eps / 2 relative),
# the power multiplies that relative error by alpha (2 here) and adds about an ulp of its own, and
# the float32 sum over at most 64 weights in [0, 1] adds at most 64 * eps / 2 ~ 4e-6 relative: all
# within rtol 1e-5, the tolerance of the brute-force tests above.
OVERFLOW_RTOL = 1e-5


@pytest.mark.parametrize(
    ("case", "levels"),
    [
        ("around 1e20", None),
        ("1e20, 1e19, 1", [1e20, 1e19, 1.0]),
        ("near float32 max", [3.0e38, 1e38, 1e30]),
    ],
)
def test_priorities_whose_power_overflows_float32_sample_exactly(case, levels):
    buffer = make_prioritised_episode_buffer(
        64, 1, 256, 3, 2, sequence_starts="any", priority_exponent=2.0
    )
    state = filled_buffer(buffer, 32)
    valid = np.asarray(buffer.valid_starts(state)).reshape(-1)
    rng = np.random.default_rng(11)
    if levels is None:
        priority = rng.uniform(0.5e20, 2e20, valid.size).astype(np.float32)
    else:
        priority = np.resize(np.array(levels, np.float32), valid.size)
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(priority.max()) ** np.float32(2))  # the naive weight overflows
    state = buffer.set_priorities(state, jnp.arange(valid.size), jnp.asarray(priority))
    assert not bool(state.nonfinite_priority)  # finite priorities are not flagged
    counts, flat = start_counts(buffer, state, 80)
    expected = exact_probabilities(priority, valid, 2.0)
    np.testing.assert_allclose(flat.probabilities, expected[flat.indices], rtol=OVERFLOW_RTOL)
    last_valid = np.flatnonzero(valid)[-1]
    assert counts[last_valid] < counts.sum() / 2, f"{case}: draws pile on the last valid start"
    assert counts[~valid].sum() == 0
    # Starts whose exact probability is below 1e-9 are never drawn in 20k draws; the rest follow
    # the exact probabilities (chi-square), the small 1e19 and 1e38 levels included.
    likely = expected > 1e-9
    assert counts[~likely].sum() == 0
    assert stats.chisquare(counts[likely], expected[likely] * counts.sum()).pvalue > 1e-4
    if levels is not None:
        second = valid & (priority == np.float32(levels[1]))
        assert counts[second].sum() > 0, f"{case}: the second level is never drawn"


@pytest.mark.parametrize("priority_exponent", [0.0, 0.6, 1.0, 2.0])
def test_ordinary_priorities_keep_their_probabilities(priority_exponent):
    """The normalised form gives the naive float32 p ** a / sum p ** a up to float32 rounding:
    p / max and the power cost a few ulp, the two float32 sums over 64 weights differ by at most
    64 eps ~ 8e-6 relative in theory and far less in practice; rtol 2e-6 is ~17 ulp."""
    buffer = make_prioritised_episode_buffer(
        64, 1, 256, 3, 2, sequence_starts="any", priority_exponent=priority_exponent
    )
    state = filled_buffer(buffer, 32)
    valid = np.asarray(buffer.valid_starts(state)).reshape(-1)
    priority = np.random.default_rng(12).uniform(0.01, 10.0, valid.size).astype(np.float32)
    state = buffer.set_priorities(state, jnp.arange(valid.size), jnp.asarray(priority))
    _, flat = start_counts(buffer, state, 20)
    naive = np.where(valid, priority ** np.float32(priority_exponent), np.float32(0))
    naive = naive / naive.sum(dtype=np.float32)
    assert naive.dtype == np.float32
    np.testing.assert_allclose(flat.probabilities, naive[flat.indices], rtol=2e-6)
    expected = exact_probabilities(priority, valid, priority_exponent)
    np.testing.assert_allclose(flat.probabilities, expected[flat.indices], rtol=1e-5)
