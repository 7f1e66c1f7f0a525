"""Bad input to every script is refused before anything compiles, in one line that names the flag,
with a non-zero exit and no traceback; run folders are new and never shared (issue 17's cases that
this suite keeps fixed)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from algorithms.dqn_mamba import DQNConfig
from algorithms.ppo_rnn import PPOConfig
from algorithms.sac_s5 import SACConfig
from memorax.results import config_dict, new_run_dir
from tests.script_runs import REPO, main_in_process, one_line_refusal, refused_in_one_line, script

CONFIGS = {"ppo_rnn": PPOConfig, "dqn_mamba": DQNConfig, "sac_s5": SACConfig}
NON_FINITE = [
    ("ppo_rnn", "learning_rate"),
    ("ppo_rnn", "ent_coef"),
    ("ppo_rnn", "gamma"),
    ("dqn_mamba", "learning_rate"),
    ("dqn_mamba", "epsilon_end"),
    ("dqn_mamba", "tau"),
    ("sac_s5", "critic_lr"),
    ("sac_s5", "target_entropy"),
    ("sac_s5", "utd_ratio"),
]


@pytest.mark.parametrize("name,field", NON_FINITE)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_by_name(name, field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ValueError, match=rf"^{flag} \({value}\) must be a finite number$"):
        CONFIGS[name](**{field: value})


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(ent_coef=-0.1), r"--ent-coef and --vf-coef must be at least 0"),
        (dict(vf_coef=-1.0), r"--ent-coef and --vf-coef must be at least 0"),
        (dict(learning_rate=-1e-3), r"--learning-rate, --clip-coef and --max-grad-norm must be"),
    ],
)
def test_ppo_refuses_negative_coefficients(overrides, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**overrides)


@pytest.mark.parametrize(
    "name,args,needles",
    [
        ("ppo_rnn", ["--learning-rate", "nan"], ["--learning-rate (nan) must be a finite number"]),
        ("sac_s5", ["--utd-ratio", "inf"], ["--utd-ratio (inf) must be a finite number"]),
        ("dqn_mamba", ["--env-id", "Pendulum-P-v1"], ["error:", "DQN needs discrete ones"]),
        ("sac_s5", ["--env-id", "CartPole-P-v1"], ["error:", "SAC needs continuous ones"]),
        ("dqn_mamba", ["--checkpoint-every", "7"], ["--checkpoint-every (7) must be 0 (off) or a"]),
        ("ppo_rnn", ["--load", "/no/such/run"], ["error: --load /no/such/run: no such folder"]),
        ("sac_s5", ["--resume", "/"], ["error: --resume /: not a run folder (no config.json)"]),
    ],
)
def test_cli_refuses_bad_values_before_compiling(name, args, needles, monkeypatch, capsys):
    refused_in_one_line(name, args, monkeypatch, capsys, *needles)


# 100,000 training env steps per seed in every script, evaluated every 20,000.
EVALUATED_EVERY_20K = {
    "ppo_rnn": dict(total_timesteps=100_000, eval_every=20_000),
    "dqn_mamba": dict(total_timesteps=104_000, learning_starts=4_000, eval_every=20_000),
    "sac_s5": dict(total_timesteps=104_000, learning_starts=4_000, eval_every=20_000),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_checkpoint_every_must_be_whole_evaluation_periods_that_divide_the_run(name):
    config, settings = CONFIGS[name], EVALUATED_EVERY_20K[name]
    for every in (0, 20_000, 100_000):
        assert config(**settings, checkpoint_every=every).checkpoint_every == every
    for every in (-20_000, 7, 30_000, 40_000):
        with pytest.raises(ValueError, match=rf"^--checkpoint-every \({every}\) must be 0 \(off"):
            config(**settings, checkpoint_every=every)


def _saved_run(tmp_path, name, **overrides):
    """A run folder as a run of ``name`` leaves it at its start (config.json only)."""
    cfg = CONFIGS[name](**overrides)
    return new_run_dir(tmp_path, f"{name}-test", config_dict(cfg, name))


@pytest.mark.parametrize(
    "name,args,needles",
    [
        ("dqn_mamba", ["--load", "{ppo_rnn}"], ["{ppo_rnn} is a run of ppo_rnn: use algorithms/"]),
        ("ppo_rnn", ["--load", "{ppo_rnn}", "--torso", "mlp"], ["--torso cannot be used with"]),
        ("ppo_rnn", ["--load", "{ppo_rnn}"], ["the run did not finish and kept no checkpoint"]),
        ("ppo_rnn", ["--resume", "{ppo_rnn}", "--num-seeds", "2"], ["--num-seeds cannot be"]),
        ("sac_s5", ["--resume", "{sac_s5}"], ["started without --checkpoint-every"]),
    ],
)
def test_saved_runs_that_cannot_be_loaded_or_resumed_are_refused_in_one_line(
    tmp_path, name, args, needles, monkeypatch, capsys
):
    runs = {key: str(_saved_run(tmp_path, key)) for key in ("ppo_rnn", "sac_s5")}
    args = [arg.format(**runs) for arg in args]
    needles = [needle.format(**runs) for needle in needles]
    refused_in_one_line(name, args, monkeypatch, capsys, *needles)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_output_dir_that_cannot_hold_results_is_refused_before_compiling(
    name, tmp_path, monkeypatch, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args, needle = ["--output-dir", str(blocker / "runs")], "cannot hold results"
    err = refused_in_one_line(name, args, monkeypatch, capsys, f"error: --output-dir {args[1]}")
    assert needle in err and len(err.strip().splitlines()) == 1
    if name == "ppo_rnn":  # once as a process: exit status 1, one line, no traceback
        one_line_refusal(script(name, *args), f"error: --output-dir {args[1]} {needle}")


def test_ctrl_c_in_a_run_without_checkpoints_stops_at_once_and_keeps_nothing(tmp_path):
    """The compiled call cannot be cancelled, and without --checkpoint-every nothing of the run
    could be kept: the process leaves at once (not when the call ends) and removes its folder."""
    command = [
        sys.executable,
        str(REPO / "algorithms" / "ppo_rnn.py"),
        "--output-dir",
        str(tmp_path),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/") as run:
        for line in run.stdout:
            if "compiling" in line:
                break
        time.sleep(1.0)
        sent = time.perf_counter()
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=60)
    assert time.perf_counter() - sent < 10  # the full default run would take minutes
    assert run.returncode == 130
    assert "SIGINT: stopped; this run saved no checkpoints (--checkpoint-every is off)" in out
    assert not any(tmp_path.iterdir())


def test_run_folders_are_new_even_within_one_second(tmp_path):
    folders = [new_run_dir(tmp_path, "ppo_rnn-CartPole-P-v1-gru") for _ in range(3)]
    assert len(set(folders)) == 3
    assert all(folder.is_dir() and not any(folder.iterdir()) for folder in folders)
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no probe left


def test_a_diverged_run_says_so_keeps_its_results_and_exits_1(tmp_path, monkeypatch, capsys):
    """--learning-rate 1e30 turns every parameter NaN in the first update: the run names each
    seed and the round, marks the summary and exits 1 instead of reporting a return. (main() in
    this process, CI time: the exit status is SystemExit's, as a process would have it.)"""
    code, out, err = main_in_process("ppo_rnn", [
        "--num-envs", "4", "--num-steps", "16", "--hidden-size", "16",
        "--total-timesteps", "128", "--eval-every", "64", "--num-seeds", "2",
        "--eval-episodes", "2", "--learning-rate", "1e30", "--output-dir", str(tmp_path),
    ], monkeypatch, capsys)  # fmt: skip
    assert code == 1, err[-2000:]
    for seed in (0, 1):
        assert f"DIVERGED: seed {seed} from the round ending at env step 64:" in out
    assert "the run DIVERGED" in out
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["diverged"] and summary["diverged_seeds"] == {"0": 64, "1": 64}
    assert (run_dir / "checkpoint.msgpack").is_file() and (run_dir / "curves.npz").is_file()
