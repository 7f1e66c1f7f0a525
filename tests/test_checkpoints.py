"""Saved training states, run folders read back, and divergence flags: what --resume and --load
trust, and what they must refuse (issue 17)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memorax.checkpoints import Checkpoints
from memorax.divergence import all_finite, first_nonfinite, with_evaluation
from memorax.experiment import Timing
from memorax.results import (
    check_flags_beside,
    config_dict,
    new_run_dir,
    read_config,
    read_run,
    write_run,
)
from memorax.statistics import interquartile_mean


def _carry(seed: int = 0):
    """A two-seed carry with every kind of leaf a script's state holds."""
    keys = jax.vmap(jax.random.key)(jnp.arange(2) + seed)
    return keys, {
        "params": jax.random.normal(jax.random.key(seed), (2, 3, 4)),
        "steps": jnp.array([5, 7], jnp.int32),
        "reset": jnp.array([[True, False], [False, True]]),
    }


def _outputs(num_periods: int):
    return {"loss": np.arange(2.0 * num_periods).reshape(2, num_periods)}, np.ones((2, num_periods))


def _raw(tree):
    """Typed PRNG keys as their key data, so trees of them compare as arrays."""
    is_key = lambda x: jnp.issubdtype(x.dtype, jax.dtypes.prng_key)  # noqa: E731
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else np.asarray(x), tree)


def _same(a, b) -> bool:
    a, b = _raw(a), _raw(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(x, y) and x.dtype == y.dtype
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_a_saved_state_comes_back_exactly_and_only_the_latest_is_kept(tmp_path):
    checkpoints = Checkpoints(tmp_path, every=2, script="ppo_rnn")
    assert not checkpoints.has_state()
    checkpoints.save(2, _carry(0), _outputs(2), run_seconds=1.5)
    checkpoints.save(4, _carry(1), _outputs(4), run_seconds=3.0)
    assert sorted(p.name for p in checkpoints.folder.iterdir()) == [
        "latest.json",
        "state-000004.npz",
    ]
    template = jax.eval_shape(lambda: _carry(0))
    period, carry, outputs, seconds = checkpoints.load(template, _outputs(1))
    assert (period, seconds) == (4, 3.0)
    assert _same(carry, _carry(1)) and _same(outputs, _outputs(4))
    # The restored keys draw what the saved ones would have drawn.
    np.testing.assert_array_equal(
        jax.vmap(jax.random.uniform)(carry[0]), jax.vmap(jax.random.uniform)(_carry(1)[0])
    )
    checkpoints.remove()
    assert not checkpoints.folder.exists()


def test_a_state_file_never_named_by_the_manifest_is_ignored(tmp_path):
    """A run killed while writing its next state leaves, at worst, a file latest.json does not
    name: the previous checkpoint still loads."""
    checkpoints = Checkpoints(tmp_path, every=1, script="ppo_rnn")
    checkpoints.save(1, _carry(0), _outputs(1), run_seconds=1.0)
    (checkpoints.folder / "state-000002.npz").write_bytes(b"half a file")
    (checkpoints.folder / ".state-000002.npz.x.tmp").write_bytes(b"half a file")
    period, carry, _, _ = checkpoints.load(jax.eval_shape(lambda: _carry(0)), _outputs(1))
    assert period == 1 and _same(carry, _carry(0))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_state_is_refused(tmp_path, damage):
    checkpoints = Checkpoints(tmp_path, every=1, script="ppo_rnn")
    checkpoints.save(1, _carry(0), _outputs(1), run_seconds=1.0)
    path = checkpoints.folder / "state-000001.npz"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        start = data.index(b"NUMPY", 200) + 200  # inside an array's data, not a header
        data[start : start + 64] = bytes(255 - b for b in data[start : start + 64])
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"^--resume .*: its checkpoint (is damaged|cannot be)"):
        checkpoints.check_resumable()


def test_a_state_of_another_shape_or_script_is_refused(tmp_path):
    Checkpoints(tmp_path, every=1, script="dqn_mamba").save(1, _carry(0), _outputs(1), 1.0)
    with pytest.raises(ValueError, match=r"is a run of dqn_mamba, not ppo_rnn$"):
        Checkpoints(tmp_path, every=1, script="ppo_rnn").check_resumable()
    checkpoints = Checkpoints(tmp_path, every=1, script="dqn_mamba")
    wider = jax.eval_shape(lambda: jax.tree.map(lambda x: x, _carry(0)))
    wider[1]["params"] = jax.ShapeDtypeStruct((2, 3, 5), jnp.float32)
    with pytest.raises(
        ValueError, match=r"float32\[2, 3, 4\] where the run needs float32\[2, 3, 5\]"
    ):
        checkpoints.load(wider, _outputs(1))


def test_only_an_unfinished_run_that_saves_checkpoints_can_be_resumed(tmp_path):
    with pytest.raises(ValueError, match=r"started without --checkpoint-every"):
        Checkpoints(tmp_path, every=0, script="ppo_rnn").check_resumable()
    Checkpoints(tmp_path, every=1, script="ppo_rnn").check_resumable()  # none yet: starts over
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match=r"the run has finished; evaluate it with --load$"):
        Checkpoints(tmp_path, every=1, script="ppo_rnn").check_resumable()


# --- divergence -------------------------------------------------------------------------------
def test_all_finite_looks_at_every_float_leaf_and_only_those():
    tree = {"w": jnp.ones((2, 2)), "step": jnp.array(3), "done": jnp.array([True])}
    assert bool(all_finite(tree, {"loss": jnp.float32(0.5)}))
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        assert not bool(all_finite(tree, {"loss": jnp.float32(bad)}))
        assert not bool(all_finite({**tree, "w": tree["w"].at[1, 0].set(bad)}))
    assert bool(all_finite({"step": jnp.array(1)}))  # no float leaf: nothing to diverge


def test_with_evaluation_marks_the_last_round_of_a_period_only_for_finished_episodes():
    metrics = {"finite": jnp.array([True, True, True]), "loss": jnp.zeros(3)}
    returns = jnp.array([1.0, jnp.nan, jnp.inf])
    unfinished = with_evaluation(metrics, returns, jnp.array([True, False, False]))
    np.testing.assert_array_equal(unfinished["finite"], [True, True, True])
    finished = with_evaluation(metrics, returns, jnp.array([True, True, False]))
    np.testing.assert_array_equal(finished["finite"], [True, True, False])
    assert first_nonfinite([[True, True, True], [True, False, True], [False, False, False]]) == {
        1: 1,
        2: 0,
    }


# --- run folders ------------------------------------------------------------------------------
def _finished_run(tmp_path, finite=None):
    from algorithms.ppo_rnn import PPOConfig

    cfg = PPOConfig(num_envs=4, num_steps=16, total_timesteps=256, eval_every=128, num_seeds=4)
    run_dir = new_run_dir(tmp_path, "ppo_rnn-test", config_dict(cfg, "ppo_rnn"))
    finite = np.ones((4, 4), bool) if finite is None else finite
    eval_returns = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    summary = write_run(
        run_dir, config_dict(cfg, "ppo_rnn"), {"finite": finite, "loss": np.zeros((4, 4))},
        eval_returns, {"w": np.ones((4, 3))}, Timing(1.0, 2.0), steps_per_round=64,
        eval_every=128,
    )  # fmt: skip
    return cfg, run_dir, summary


def test_a_diverged_seed_is_named_and_left_out_of_the_iqm(tmp_path, capsys):
    finite = np.ones((4, 4), bool)
    finite[2, 1:] = False  # seed 2 from its second round (env step 128)
    _, run_dir, summary = _finished_run(tmp_path, finite)
    assert summary["diverged"] and summary["diverged_seeds"] == {2: 128}
    assert summary["final_eval_return_iqm"] == pytest.approx(interquartile_mean([10, 20, 40]))
    assert summary["num_seeds"] == 3
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["diverged_seeds"] == {"2": 128}
    assert np.isnan(saved["final_eval_return_per_seed"][2])
    assert "DIVERGED: seed 2 from the round ending at env step 128" in capsys.readouterr().out


def test_read_run_gives_back_the_config_and_refuses_what_it_cannot_trust(tmp_path):
    from algorithms.dqn_mamba import DQNConfig
    from algorithms.ppo_rnn import PPOConfig

    cfg, run_dir, summary = _finished_run(tmp_path)
    assert not summary["diverged"]
    loaded, checkpoint = read_run(run_dir, "ppo_rnn", PPOConfig, eval_episodes=3)
    assert loaded == PPOConfig(**{**vars(cfg), "eval_episodes": 3})

    def refused(match, *args):
        with pytest.raises(ValueError, match=match):
            read_run(*args) if args else read_run(run_dir, "ppo_rnn", PPOConfig)

    refused(r"no such folder$", tmp_path / "nowhere", "ppo_rnn", PPOConfig)
    refused(r"not a run folder \(no config.json\)$", tmp_path, "ppo_rnn", PPOConfig)
    refused(r"is a run of ppo_rnn: use algorithms/ppo_rnn.py --load$", run_dir, "dqn_mamba",
            DQNConfig)  # fmt: skip
    data = bytearray(checkpoint.read_bytes())
    data[-8:] = bytes(8)
    checkpoint.write_bytes(bytes(data))
    refused(r"checkpoint.msgpack is missing or damaged")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "new_flag": 1}))
    refused(r"has 'new_flag', which this ppo_rnn does not know")
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "summary.json").unlink()
    refused(r"the run did not finish and kept no checkpoint$")
    Checkpoints(run_dir, every=1, script="ppo_rnn").save(1, _carry(), _outputs(1), 1.0)
    refused(rf"the run did not finish; go on with --resume {run_dir}$")
    with pytest.raises(ValueError, match=r"^--resume .*: config.json is damaged"):
        (run_dir / "config.json").write_text("{")
        read_config(run_dir, "--resume", "ppo_rnn", PPOConfig)


@pytest.mark.parametrize(
    "argv,refused",
    [
        (["--load", "r", "--eval-episodes", "4", "--seed=3"], None),
        (["--load", "r", "--torso", "mlp"], "--torso"),
        (["--load=r", "--no-anneal-lr"], "--no-anneal-lr"),
        (["--num-seeds=8", "--load", "r"], "--num-seeds"),
    ],
)
def test_flags_beside_load_are_applied_or_refused_by_name(argv, refused):
    if refused is None:
        check_flags_beside("--load", ("--eval-episodes", "--seed"), argv)
        return
    with pytest.raises(ValueError, match=rf"^{refused} cannot be used with --load: the saved run"):
        check_flags_beside("--load", ("--eval-episodes", "--seed"), argv)
