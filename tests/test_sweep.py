"""--sweep: configs x seeds in one compiled call, each run equal to the plain run it stands for."""

import dataclasses
import json
import time
from functools import partial
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest

from algorithms import dqn_mamba, ppo_rnn, sac_s5
from memorax.environments import make
from memorax.experiment import seed_keys
from memorax.sweep import parse_sweep, swept
from tests.script_runs import main_in_process, refused_in_one_line

SCRIPTS = {"ppo_rnn": ppo_rnn, "dqn_mamba": dqn_mamba, "sac_s5": sac_s5}
CONFIGS = {
    "ppo_rnn": ppo_rnn.PPOConfig,
    "dqn_mamba": dqn_mamba.DQNConfig,
    "sac_s5": sac_s5.SACConfig,
}
TINY = {
    "ppo_rnn": dict(num_envs=4, num_steps=16, hidden_size=16, total_timesteps=128, eval_every=64,
                    num_seeds=2, eval_episodes=4),
    "dqn_mamba": dict(torso="gru", hidden_size=16, num_envs=4, train_frequency=2, batch_size=8,
                      sequence_length=6, burn_in=3, buffer_size=512, learning_starts=256,
                      total_timesteps=320, eval_every=32, num_seeds=2, eval_episodes=4,
                      prioritised=True),
    "sac_s5": dict(torso="gru", hidden_size=16, critic_head_size=16, num_envs=4, batch_size=6,
                   sequence_length=6, burn_in=3, buffer_size=512, learning_starts=256,
                   total_timesteps=288, eval_every=32, num_seeds=2, eval_episodes=4),
}  # fmt: skip
# Two configs of two flags each (zip), none of them the default: config i, seed j of the sweep
# is checked against the plain run with config i's values, seed j.
SWEEPS = {
    "ppo_rnn": {"learning_rate": (3e-3, 1e-2), "gamma": (0.9, 0.97)},
    "dqn_mamba": {"learning_rate": (3e-3, 1e-2), "epsilon_end": (0.2, 0.5)},
    "sac_s5": {"critic_lr": (3e-3, 1e-2), "tau": (0.01, 0.05)},
}


def table_runs(swept_values: dict) -> list[dict]:
    """Sweep.runs() of a 2-config zip sweep of ``swept_values``, 2 seeds, written out."""
    return [
        {"config": i, **{n: v[i] for n, v in swept_values.items()}, "seed": j}
        for i in range(2)
        for j in range(2)
    ]


def flags(values: dict) -> list[str]:
    out = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def test_a_grid_is_every_combination_in_order_and_zip_pairs_values():
    cfg = ppo_rnn.PPOConfig(num_seeds=3, sweep=("learning-rate=1e-3,3e-3", "gamma=0.9,0.99,1"))
    sweep = parse_sweep(cfg)
    assert sweep.names == ("learning_rate", "gamma") and sweep.num_runs == 18
    assert sweep.configs[1] == {"learning_rate": 1e-3, "gamma": 0.99}
    assert sweep.configs[3] == {"learning_rate": 3e-3, "gamma": 0.9}
    runs = sweep.runs()
    assert runs[7] == {"config": 2, "learning_rate": 1e-3, "gamma": 1.0, "seed": 1}
    index, keys, values = sweep.inputs(5)
    np.testing.assert_array_equal(index, np.arange(18))
    # Seed j of every config gets the key of seed j of a plain run: common random numbers.
    plain = jax.random.key_data(seed_keys(5, 3))
    np.testing.assert_array_equal(jax.random.key_data(keys), np.tile(plain, (6, 1)))
    np.testing.assert_array_equal(
        values["gamma"], np.repeat(np.float32([0.9, 0.99, 1, 0.9, 0.99, 1]), 3)
    )
    zipped = parse_sweep(dataclasses.replace(cfg, sweep=("gamma=0.9,0.99", "clip-coef=0.1,0.3"),
                                             sweep_mode="zip"))  # fmt: skip
    assert zipped.configs == ({"gamma": 0.9, "clip_coef": 0.1}, {"gamma": 0.99, "clip_coef": 0.3})
    assert parse_sweep(dataclasses.replace(cfg, sweep=())).runs() == [
        {"config": 0, "seed": j} for j in range(3)
    ]


@pytest.mark.parametrize(
    "name, sweep, needles",
    [
        ("ppo_rnn", ["--sweep", "num-envs=8,16"], ["--num-envs cannot vary", "integer flag"]),
        ("ppo_rnn", ["--sweep", "anneal-lr=0,1"], ["--anneal-lr cannot vary", "switch"]),
        ("ppo_rnn", ["--sweep", "torso=gru,s5"], ["--torso cannot vary", "model"]),
        ("sac_s5", ["--sweep", "utd-ratio=0.5,1"], ["--utd-ratio cannot vary", "updates a round"]),
        ("ppo_rnn", ["--sweep", "learnin-rate=1,2"], ["not a flag", "--learning-rate, --gamma"]),
        ("ppo_rnn", ["--sweep", "gamma=0.9,x"], ["values must be numbers"]),
        ("ppo_rnn", ["--sweep", "gamma"], ["write NAME=v1,v2"]),
        ("ppo_rnn", ["--sweep", "gamma=0.9,1.5"], ["--gamma 1.5 is refused", "--gamma must lie"]),
        ("dqn_mamba", ["--sweep", "gamma=0.9", "--sweep", "gamma=0.8"], ["given twice"]),
        (
            "ppo_rnn",
            ["--sweep", "gamma=0.9,0.99", "--sweep", "vf-coef=1,2,3", "--sweep-mode", "zip"],
            ["zip needs as many values", "--gamma 2, --vf-coef 3"],
        ),
    ],
)
def test_what_cannot_be_swept_is_refused_by_name_before_compiling(
    name, sweep, needles, monkeypatch, capsys
):
    refused_in_one_line(name, sweep, monkeypatch, capsys, *needles)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_float_flag_that_sweep_accepts_traces_through_the_whole_run(name):
    """Each sweepable flag is an array inside the compiled run: building the agent with every
    one of them traced, then a warmup, a period of training and an evaluation, must not need a
    concrete value (a Python ``if`` or ``int()`` on a swept value fails here, not in a user's
    sweep)."""
    module = SCRIPTS[name]
    extra = {"target_entropy": -1.0} if name == "sac_s5" else {}  # None (automatic) by default
    cfg = CONFIGS[name](**TINY[name], **extra)
    fields = dataclasses.fields(cfg)
    floats = [f.name for f in fields if f.type in (float, float | None)]
    sweepable = [n for n in floats if n not in type(cfg).fixed_in_sweep]
    specs = tuple(f"{n}={getattr(cfg, n)},{getattr(cfg, n)}" for n in sweepable)
    sweep = parse_sweep(dataclasses.replace(cfg, sweep=specs, sweep_mode="zip"))
    assert set(sweep.names) == set(sweepable) and len(sweepable) >= 5
    env, env_params = make(cfg.env_id)
    start_run, train_run = swept(partial(module.make_agent, cfg, env, env_params),
                                 module.start, module.train_periods)  # fmt: skip
    inputs = sweep.inputs(0)
    carry = jax.eval_shape(jax.vmap(start_run), inputs)
    _, (metrics, eval_return) = jax.eval_shape(jax.vmap(lambda c: train_run(c, 0, 1)), carry)
    assert eval_return.shape == (sweep.num_runs, 1)


class RecordingTracker:
    """Stands in for memorax.tracking's trackers: keeps every log with the time it came."""

    def __init__(self, runs):
        self.runs, self.logs, self.where, self.closed = runs, [], "recording", False

    def log(self, run, step, values):
        self.logs.append((time.perf_counter(), run, step, dict(values)))

    def close(self):
        self.closed = True


def _tree(path: Path):
    return flax.serialization.msgpack_restore(path.read_bytes())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", SCRIPTS)
def test_config_i_seed_j_of_a_sweep_equals_the_plain_run(name, tmp_path, monkeypatch, capsys):
    """A 2-config x 2-seed sweep in one compiled call against the two plain runs of 2 seeds: the
    same curves and parameters, to float rounding (the swept values are arrays in the compiled
    run, the plain run's are constants). The sweep's folder names the best config, summarises
    each, writes results.csv, and --load evaluates every config and seed again."""
    swept_values = SWEEPS[name]
    specs = [f"{n.replace('_', '-')}={','.join(map(str, v))}" for n, v in swept_values.items()]
    args = flags(TINY[name]) + ["--sweep-mode", "zip", "--output-dir", str(tmp_path / "sweep")]
    for spec in specs:
        args += ["--sweep", spec]
    trackers, trained = [], []
    if name == "ppo_rnn":  # --track: what the tracker gets, and when (CI time: one script)
        args += ["--track", "tensorboard"]
        monkeypatch.setattr(
            ppo_rnn,
            "open_tracker",
            lambda track, run_dir, name, config, runs, **_: (
                None if track is None else trackers.append(RecordingTracker(runs)) or trackers[-1]
            ),
        )
        monkeypatch.setattr(ppo_rnn, "train_seeds", lambda *a, train_seeds=ppo_rnn.train_seeds:
                            (train_seeds(*a), trained.append(time.perf_counter()))[0])  # fmt: skip
    code, out, err = main_in_process(name, args, monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    (sweep_dir,) = (tmp_path / "sweep").iterdir()
    assert "2 configs x 2 seeds" in out
    for i in range(2) if name == "ppo_rnn" else (1,):  # CI time: config 1 alone in the others
        plain = {n: v[i] for n, v in swept_values.items()}
        output = str(tmp_path / f"plain{i}")
        code, _, err = main_in_process(
            name, flags({**TINY[name], **plain}) + ["--output-dir", output], monkeypatch, capsys
        )
        assert code in (0, None), err[-3000:]
        (plain_dir,) = Path(output).iterdir()
        with np.load(sweep_dir / "curves.npz") as a, np.load(plain_dir / "curves.npz") as b:
            rows = a["config"] == i
            np.testing.assert_array_equal(a["seed"][rows], [0, 1])
            for key in b.files:
                if key != "config":
                    np.testing.assert_allclose(
                        a[key][rows], b[key], rtol=1e-4, atol=1e-5, err_msg=f"{key} config {i}"
                    )
        jax.tree.map(
            lambda s, p, i=i: np.testing.assert_allclose(s[2 * i : 2 * i + 2], p, rtol=1e-4,
                                                         atol=1e-5),
            _tree(sweep_dir / "checkpoint.msgpack"), _tree(plain_dir / "checkpoint.msgpack"),
        )  # fmt: skip
        plain_summary = json.loads((plain_dir / "summary.json").read_text())
        summary = json.loads((sweep_dir / "summary.json").read_text())
        row = summary["configs"][i]
        assert row["values"] == pytest.approx(plain)
        np.testing.assert_allclose(
            row["final_eval_return_per_seed"], plain_summary["final_eval_return_per_seed"],
            rtol=1e-4,
        )  # fmt: skip
    iqms = [row["final_eval_return_iqm"] for row in summary["configs"]]
    assert summary["best_config"] == int(np.argmax(iqms))
    assert f"best: config {summary['best_config']} (" in out
    table = __import__("pandas").read_csv(sweep_dir / "results.csv")
    assert list(table.columns[:4]) == ["run", "config", *swept_values][:4]
    final = table[(table.metric == "eval_return") & (table.env_steps == table.env_steps.max())]
    with np.load(sweep_dir / "curves.npz") as curves:
        np.testing.assert_allclose(final.value, curves["eval_return"][:, -1], rtol=1e-6)
    if name != "ppo_rnn":
        return  # CI time: --load of a sweep is the same code in every script
    (tracker,) = trackers
    assert tracker.closed and tracker.runs == table_runs(swept_values)
    with np.load(sweep_dir / "curves.npz") as curves:
        for run in range(4):
            logs = [log for log in tracker.logs if log[1] == run]
            # Live: every evaluation and round reached the tracker before the compiled call
            # returned, from inside it, not from the results afterwards.
            assert logs and all(when < trained[0] for when, *_ in logs)
            evals = [(step, v["eval/return"]) for _, _, step, v in logs if "eval/return" in v]
            np.testing.assert_array_equal([s for s, _ in evals], curves["eval_env_steps"][run])
            np.testing.assert_allclose([v for _, v in evals], curves["eval_return"][run])
            rounds = [(step, v["train/loss"]) for _, _, step, v in logs if "train/loss" in v]
            np.testing.assert_array_equal([s for s, _ in rounds], curves["round_env_steps"][run])
            np.testing.assert_allclose([v for _, v in rounds], curves["loss"][run], rtol=1e-6)
    code, out, err = main_in_process(name, ["--load", str(sweep_dir)], monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    assert out.count(f"evaluation of {sweep_dir}, config ") == 2
