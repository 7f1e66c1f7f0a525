"""Bad input to every script is refused before anything compiles, in one line that names the flag,
with a non-zero exit and no traceback; run folders are new and never shared (issue 17's cases that
this suite keeps fixed)."""

import subprocess
import sys
from pathlib import Path

import pytest

from algorithms.dqn_mamba import DQNConfig
from algorithms.ppo_rnn import PPOConfig
from algorithms.sac_s5 import SACConfig
from memorax.results import new_run_dir

REPO = Path(__file__).resolve().parents[1]
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


@pytest.mark.parametrize("script,field", NON_FINITE)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_by_name(script, field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ValueError, match=rf"^{flag} \({value}\) must be a finite number$"):
        CONFIGS[script](**{field: value})


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


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "algorithms" / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=240, cwd="/",
    )  # fmt: skip


def _refused_in_one_line(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "compiling" not in done.stdout
    shown = " ".join(done.stderr.replace("│", " ").split())  # tyro boxes and wraps its messages
    for needle in needles:
        assert needle in shown, done.stderr[-2000:]


@pytest.mark.parametrize(
    "script,args,needles",
    [
        ("ppo_rnn", ["--learning-rate", "nan"], ["--learning-rate (nan) must be a finite number"]),
        ("sac_s5", ["--utd-ratio", "inf"], ["--utd-ratio (inf) must be a finite number"]),
        ("dqn_mamba", ["--env-id", "Pendulum-P-v1"], ["error:", "DQN needs discrete ones"]),
        ("sac_s5", ["--env-id", "CartPole-P-v1"], ["error:", "SAC needs continuous ones"]),
    ],
)
def test_cli_refuses_bad_values_before_compiling(script, args, needles):
    _refused_in_one_line(_script(script, *args), *needles)


@pytest.mark.parametrize("script", sorted(CONFIGS))
def test_an_output_dir_that_cannot_hold_results_is_refused_before_compiling(script, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _script(script, "--output-dir", str(blocker / "runs"))
    _refused_in_one_line(done, f"error: --output-dir {blocker / 'runs'} cannot hold results")
    assert len(done.stderr.strip().splitlines()) == 1


def test_run_folders_are_new_even_within_one_second(tmp_path):
    folders = [new_run_dir(tmp_path, "ppo_rnn-CartPole-P-v1-gru") for _ in range(3)]
    assert len(set(folders)) == 3
    assert all(folder.is_dir() and not any(folder.iterdir()) for folder in folders)
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no probe left
