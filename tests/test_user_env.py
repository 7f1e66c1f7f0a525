"""A researcher's own env, never registered, trains with each script's Python API, and its saved
run comes back only on the env it trained on (README, "Your own env")."""

import dataclasses
import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from memorax.environments import make
from memorax.results import run_env
from tests.script_runs import refused_in_one_line

EPISODE = 4


@struct.dataclass
class CueState(environment.EnvState):
    cue: jax.Array  # +1 or -1, shown on the first step only
    time: int


@struct.dataclass
class CueParams(environment.EnvParams):
    max_steps_in_episode: int = EPISODE


class Cue(environment.Environment):
    """A cue of +-1 is shown on the first step, zeros after; on the last step the action is
    paid 1 for the cue's sign (continuous: 1 - |action - cue| / 2). Every return lies in [0, 1],
    far from any return of the registered envs a run could silently fall back to (CartPole
    pays 1 a step, Pendulum costs up to 16)."""

    def __init__(self, continuous: bool = False):
        self.continuous = continuous

    @property
    def default_params(self) -> CueParams:
        return CueParams()

    def reset_env(self, key, params):
        state = CueState(cue=jnp.where(jax.random.bernoulli(key), 1.0, -1.0), time=0)
        return jnp.array([state.cue, 1.0]), state

    def step_env(self, key, state, action, params):
        if self.continuous:
            paid = 1.0 - jnp.abs(jnp.clip(action[0], -1.0, 1.0) - state.cue) / 2
        else:
            paid = (action == (state.cue > 0)).astype(jnp.float32)
        state = state.replace(time=state.time + 1)
        last = state.time >= params.max_steps_in_episode
        return jnp.zeros(2), state, jnp.where(last, paid, 0.0), last, {}

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (2,))

    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (1,)) if self.continuous else spaces.Discrete(2)


SCRIPTS = {  # script: (its config class, its tiny test config, continuous actions)
    "ppo_rnn": ("PPOConfig", "tests.test_ppo", False),
    "dqn_mamba": ("DQNConfig", "tests.test_dqn", False),
    "sac_s5": ("SACConfig", "tests.test_sac", True),
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_trains_a_users_env_and_loads_it_back_only_on_that_env(
    name, tmp_path, monkeypatch, capsys
):
    config_class, tests_module, continuous = SCRIPTS[name]
    script = importlib.import_module(f"algorithms.{name}")
    cfg = importlib.import_module(tests_module).tiny_config(num_seeds=1, output_dir=str(tmp_path))
    env = Cue(continuous)
    env_params = env.default_params

    run_dir, summary = script.run(cfg, env, env_params)
    record = json.loads((run_dir / "config.json").read_text())["env"]
    assert record == {
        "id": None,
        "name": "Cue",
        "class": "tests.test_user_env.Cue",
        "params": {"max_steps_in_episode": EPISODE},
    }
    assert run_dir.name.startswith(f"{name}-Cue-")
    assert 0.0 <= summary["final_eval_return_per_seed"][0] <= 1.0  # Cue's returns, not CartPole's

    load = getattr(script, config_class)(load=str(run_dir), eval_episodes=8)
    returns = script.evaluate_saved_run(load, env, env_params)
    assert returns.shape == (1,) and 0.0 <= returns[0] <= 1.0, returns

    # From the command line the env cannot be rebuilt from a name: refused, never replaced by
    # cfg.env_id's registered env (which is what --load did before it recorded the env).
    capsys.readouterr()  # the training's output
    for flag in ("--load", "--resume"):
        refused_in_one_line(
            name, [flag, str(run_dir)], monkeypatch, capsys,
            f"{flag} {run_dir}: the run trained on a user-built env (tests.test_user_env.Cue)",
        )  # fmt: skip
    # From Python, only the env it trained on, with the same params.
    with pytest.raises(SystemExit, match="not on the tests.test_user_env.Cue with params"):
        script.evaluate_saved_run(load, env, CueParams(max_steps_in_episode=EPISODE + 1))


def test_an_env_whose_params_give_no_episode_length_is_refused_before_compiling(tmp_path, capsys):
    """Evaluation runs one whole episode; with no max_steps_in_episode it used to guess 1000."""
    from algorithms.ppo_rnn import run
    from tests.test_ppo import tiny_config

    @struct.dataclass
    class NoLength:
        pass

    with pytest.raises(SystemExit, match="have no max_steps_in_episode"):
        run(tiny_config(output_dir=str(tmp_path)), Cue(), NoLength())
    assert "compiling" not in capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


def test_registered_envs_are_rebuilt_from_their_id(tmp_path):
    env, env_params, record = run_env("RepeatFirstEasy", make)
    assert record["id"] == record["name"] == "RepeatFirstEasy"
    assert record["params"] == {
        field.name: np.asarray(getattr(env_params, field.name)).tolist()
        for field in dataclasses.fields(env_params)
    }
    (tmp_path / "config.json").write_text(json.dumps({"env": record, "env_id": "CartPole-P-v1"}))
    rebuilt, _, again = run_env("CartPole-P-v1", make, load=tmp_path)
    assert again == record and type(rebuilt) is type(env)  # the record decides, not env_id
    (tmp_path / "config.json").write_text(json.dumps({"env_id": "CartPole-P-v1"}))  # older runs
    assert run_env("CartPole-P-v1", make, resume=tmp_path)[2]["id"] == "CartPole-P-v1"
