"""algorithms/ppo_rnn.py: GAE, the recurrent replay, bootstrapping, seeds, devices, resumability,
config validation and a short learning test."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from algorithms.ppo_rnn import PPO, PPOConfig, PPOState, make_agent, ppo_loss
from memorax.environments import make
from memorax.experiment import run_seeds, seed_keys
from memorax.returns import generalized_advantage_estimate
from memorax.rollout import StepInput, greedy_episode_returns
from memorax.statistics import interquartile_mean
from tests.script_runs import main_in_process, refused_in_one_line, stopped_and_resumed

REPO = Path(__file__).resolve().parents[1]
ENV_ID = "CartPole-P-v1"


def tiny_config(**overrides) -> PPOConfig:
    settings = dict(num_envs=4, num_steps=16, hidden_size=16, num_seeds=2)
    settings = {**settings, "eval_episodes": 4, **overrides}
    steps_per_round = settings["num_envs"] * settings["num_steps"]
    settings.setdefault("total_timesteps", 4 * steps_per_round)
    settings.setdefault("eval_every", 2 * steps_per_round)
    return PPOConfig(**settings)


def tiny_agent(env_params_overrides=None, **overrides) -> PPO:
    cfg = tiny_config(**overrides)
    env, env_params = make(cfg.env_id)
    if env_params_overrides:
        env_params = env_params.replace(**env_params_overrides)
    return make_agent(cfg, env, env_params)


def trees_equal(a, b) -> bool:
    same = jax.tree.map(lambda u, v: np.array_equal(np.asarray(u), np.asarray(v)), a, b)
    return all(jax.tree.leaves(same))


def tree_max_diff(a, b) -> float:
    diffs = jax.tree.map(lambda u, v: jnp.max(jnp.abs(jnp.asarray(u) - jnp.asarray(v))), a, b)
    return float(max(jax.tree.leaves(diffs)))


def test_gae_matches_python_loop_with_terminations_and_truncations():
    rng = np.random.default_rng(0)
    steps, envs, gamma, lam = 20, 3, 0.97, 0.9
    rewards, values, next_values = rng.normal(size=(3, steps, envs)).astype(np.float32)
    terminated = rng.random((steps, envs)) < 0.15
    truncated = (rng.random((steps, envs)) < 0.15) & ~terminated
    assert terminated.any() and truncated.any()
    advantages, targets = generalized_advantage_estimate(
        jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(next_values),
        jnp.asarray(terminated), jnp.asarray(truncated), gamma, lam,
    )  # fmt: skip
    expected = np.zeros((steps, envs))
    for env in range(envs):
        following = 0.0
        for t in reversed(range(steps)):
            bootstrap = 0.0 if terminated[t, env] else gamma * next_values[t, env]
            delta = rewards[t, env] + bootstrap - values[t, env]
            episode_ends = terminated[t, env] or truncated[t, env]
            following = delta if episode_ends else delta + gamma * lam * following
            expected[t, env] = following
    np.testing.assert_allclose(advantages, expected, atol=1e-5)
    np.testing.assert_allclose(targets, expected + values, atol=1e-5)


@pytest.mark.parametrize("clip_value_loss", [True, False])
def test_ppo_loss_matches_the_plain_formula(clip_value_loss):
    """Schulman et al. 2017's clipped objective, element by element in Python floats."""
    rng = np.random.default_rng(1)
    log_prob, old_log_prob = rng.normal(scale=0.3, size=(2, 5, 7))
    value, old_value, targets, entropy = rng.normal(size=(4, 5, 7))
    advantages = rng.normal(size=(5, 7))
    clip, vf_coef, ent_coef = 0.2, 0.5, 0.01
    arrays = dict(
        log_prob=log_prob, entropy=entropy, value=value, old_log_prob=old_log_prob,
        old_value=old_value, advantages=advantages, targets=targets,
    )  # fmt: skip
    loss, metrics = ppo_loss(
        **{name: jnp.asarray(x, jnp.float32) for name, x in arrays.items()},
        clip_coef=clip,
        clip_value_loss=clip_value_loss,
        vf_coef=vf_coef,
        ent_coef=ent_coef,
    )
    normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_terms, value_terms = [], []
    for i in np.ndindex(advantages.shape):
        ratio = np.exp(log_prob[i] - old_log_prob[i])
        clipped_ratio = min(max(ratio, 1 - clip), 1 + clip)
        policy_terms.append(-min(ratio * normalised[i], clipped_ratio * normalised[i]))
        error = (value[i] - targets[i]) ** 2
        if clip_value_loss:
            clipped = old_value[i] + min(max(value[i] - old_value[i], -clip), clip)
            error = max(error, (clipped - targets[i]) ** 2)
        value_terms.append(error)
    policy_loss, value_loss = np.mean(policy_terms), 0.5 * np.mean(value_terms)
    expected = policy_loss + vf_coef * value_loss - ent_coef * entropy.mean()
    assert float(metrics["policy_loss"]) == pytest.approx(policy_loss, abs=1e-5)
    assert float(metrics["value_loss"]) == pytest.approx(value_loss, abs=1e-5)
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    assert float(metrics["clip_fraction"]) == pytest.approx(
        np.mean(np.abs(np.exp(log_prob - old_log_prob) - 1) > clip)
    )


REPLAY_CASES = [
    ("gru", False, False),
    ("lstm", True, True),
    ("mlp", False, True),
    ("mamba", False, True),
    ("attention", True, False),
]


@pytest.mark.parametrize("torso,shared,prev_inputs", REPLAY_CASES)
def test_training_pass_replays_exactly_what_acted(torso, shared, prev_inputs):
    """Whole env sequences replayed from the rollout's starting carry with its reset flags give
    the acting pass's log-probs and values: PPO's ratios start at exactly 1."""
    agent = tiny_agent(
        torso=torso, shared_torso=shared, use_prev_action=prev_inputs,
        use_prev_reward=prev_inputs, num_steps=48,
    )  # fmt: skip
    key, state = agent.init(jax.random.key(0))
    _, rollout, _, _, _ = jax.jit(agent.collect)(state, key)
    assert bool(rollout.inputs.reset[1:].any()), (
        "no episode ended inside the rollout: test is vacuous"
    )
    sequences = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rollout)  # [E, T, ...]
    _, policy, value = agent.forward(state.params, sequences.inputs, state.carry)
    assert tree_max_diff(policy.log_prob(sequences.action), sequences.log_prob) <= 1e-5
    assert tree_max_diff(value, sequences.value) <= 1e-5
    # The first step of every episode sees no action or reward of the episode before.
    inputs = sequences.inputs
    assert float(jnp.abs(inputs.prev_action[inputs.reset]).max()) == 0.0
    assert float(jnp.abs(inputs.prev_reward[inputs.reset]).max()) == 0.0


def widened(state: PPOState) -> PPOState:
    """The state with its Gaussian policy's log-std at its ceiling (std e^2), so that most of
    Pendulum's sampled actions fall outside its [-2, 2] bounds and get clipped."""
    actor = state.params[0]["params"]
    head = {**actor["head"], "Dense_1": {**actor["head"]["Dense_1"], "bias": jnp.full((1,), 5.0)}}
    params = ({"params": {**actor, "head": head}}, *state.params[1:])
    return state.replace(params=params)


def test_the_previous_action_input_is_the_clipped_action_the_env_executed():
    """With --use-prev-action on a bounded continuous action space, the next step's prev_action
    is the action the env received (clipped, as POPGym's wrapper gives it), not the raw Gaussian
    sample: an unbounded input that the policy feeds back to itself can diverge."""
    agent = tiny_agent(env_id="Pendulum-P-v1", use_prev_action=True, num_steps=32)
    key, state = agent.init(jax.random.key(2))
    _, rollout, _, _, _ = jax.jit(agent.collect)(widened(state), key)
    action, prev = np.asarray(rollout.action), np.asarray(rollout.inputs.prev_action)
    assert (np.abs(action) > 2).mean() > 0.3, "too few actions clipped: test is vacuous"
    np.testing.assert_array_equal(prev[1:], np.clip(action[:-1], -2.0, 2.0))


def test_greedy_evaluation_feeds_back_the_action_the_env_executed():
    """A 3-step episode whose reward is the action the env receives, under a policy that acts
    3 - prev_action, clipped to [-2, 2]: fed back the clipped action, it earns 2 + 1 + 2 (3 -> 2,
    then 3 - 2 = 1, then 3 - 1 = 2); fed back the raw action, 2 + 0 + 2 (then 3 - 3 = 0)."""

    class Echo:
        def action_space(self, params):
            return spaces.Box(-2.0, 2.0, (1,))

        def reset(self, key, params):
            return jnp.zeros(1), jnp.zeros((), jnp.int32)

        def step(self, key, t, action, params):
            return jnp.zeros(1), t + 1, action[0], t + 1 >= 3, jnp.bool_(False), {}

    def act(carry, inputs):
        return carry, 3.0 - inputs.prev_action[:, 0]

    def clip(action):
        return jnp.clip(action, -2.0, 2.0)

    total, finished = greedy_episode_returns(jax.random.key(0), Echo(), None, act, (), 2, 3, clip)
    assert bool(finished.all())
    np.testing.assert_array_equal(total, [5.0, 5.0])


@pytest.mark.parametrize("env_id", ["CartPole-P-v1", "Pendulum-P-v1"])
def test_truncation_bootstraps_from_the_final_observation_value(env_id):
    """With a 10-step time limit, truncated steps bootstrap from the critic's value of the final
    observation, seen after the episode's own history (on Pendulum, with the clipped actions as
    previous-action inputs), and the advantage recursion stops there."""
    agent = tiny_agent(
        {"max_steps_in_episode": 10}, env_id=env_id, use_prev_action=True, num_steps=32,
        gamma=0.9, gae_lambda=0.8,
    )  # fmt: skip
    key, state = agent.init(jax.random.key(1))
    if env_id == "Pendulum-P-v1":
        state = widened(state)
    _, rollout, info, advantages, _ = jax.jit(agent.collect)(state, key)
    truncated = np.argwhere(np.asarray(rollout.truncated))
    assert len(truncated), "no truncation inside the rollout: test is vacuous"
    for t, env in truncated[:4]:
        start = int(np.flatnonzero(np.asarray(rollout.inputs.reset[: t + 1, env]))[-1])
        history = jax.tree.map(lambda x, s=start, t=t, e=env: x[s : t + 1, e][None], rollout)
        observation = jnp.concatenate(
            [history.inputs.observation, info["final_observation"][t, env][None, None]], axis=1
        )
        inputs = StepInput(
            observation=observation,
            reset=jnp.zeros(observation.shape[:2], bool).at[0, 0].set(True),
            prev_action=jnp.concatenate(
                [history.inputs.prev_action, agent.env_action(history.action[:, -1:])], axis=1
            ),
            prev_reward=jnp.concatenate(
                [history.inputs.prev_reward, history.reward[:, -1:]], axis=1
            ),
        )
        value = agent.value(state.params, inputs, agent.initialize_carry(1))[0, -1]
        assert abs(float(value - rollout.final_value[t, env])) <= 1e-5
        expected = rollout.reward[t, env] + 0.9 * value - rollout.value[t, env]
        assert abs(float(advantages[t, env] - expected)) <= 1e-5


def _train_params(agent: PPO, rounds: int):
    def run(key):
        key, state = agent.init(key)
        _, state, _ = agent.train(key, state, rounds * agent.cfg.steps_per_round)
        return state.params

    return run


@pytest.mark.timeout(300)
def test_seed_i_of_a_multi_seed_run_equals_the_single_seed_run():
    agent = tiny_agent()
    run = _train_params(agent, rounds=2)
    keys = seed_keys(0, 3)
    batched, _ = run_seeds(run, keys)
    single = jax.jit(run)(keys[2])
    assert tree_max_diff(jax.tree.map(lambda x: x[2], batched), single) <= 1e-5


@pytest.mark.timeout(300)
def test_a_run_alone_on_its_device_compiles_without_the_seed_vmap():
    """One run per device: run_seeds compiles the run itself (no batch dimension, which costs a
    single run 2.3x at PureJaxRL's reference config on a CPU); the same bits as jit(run)."""
    run = _train_params(tiny_agent(), rounds=2)
    keys = seed_keys(0, 1)
    params, _ = run_seeds(run, keys)
    single = jax.jit(run)(keys[0])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[0], b), params, single)


TWO_DEVICE_SCRIPT = """
import sys
import jax, numpy as np
from tests.test_ppo import tiny_agent, _train_params
from memorax.experiment import run_seeds, seed_keys
params, _ = run_seeds(_train_params(tiny_agent(), rounds=2), seed_keys(0, 2))
np.savez(sys.argv[1], *[np.asarray(leaf) for leaf in jax.tree.leaves(params)])
print("devices", jax.local_device_count())
"""


@pytest.mark.timeout(300)
def test_two_simulated_devices_give_the_same_results_as_one(tmp_path):
    outputs = {}
    for devices in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        path = tmp_path / f"params_{devices}.npz"
        done = subprocess.run(
            [sys.executable, "-c", TWO_DEVICE_SCRIPT, str(path)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"devices {devices}" in done.stdout
        with np.load(path) as saved:
            outputs[devices] = [saved[name] for name in saved.files]
    for one, two in zip(outputs[1], outputs[2], strict=True):
        np.testing.assert_allclose(one, two, atol=1e-5)


def test_train_is_resumable_bit_for_bit():
    agent = tiny_agent(torso="lstm", use_prev_action=True)
    train = jax.jit(agent.train, static_argnums=2)
    key, state = agent.init(jax.random.key(3))
    steps = agent.cfg.steps_per_round
    # Two step counts, two compiles (train's step count is static): one round, then another,
    # against two rounds straight.
    key_a, state_a, _ = train(key, state, steps)
    key_a, state_a, _ = train(key_a, state_a, steps)
    key_b, state_b, transitions = train(key, state, 2 * steps)
    assert isinstance(state_b, PPOState)
    assert trees_equal(jax.random.key_data(key_a), jax.random.key_data(key_b))
    assert trees_equal(state_a, state_b)
    # transitions: the last rollout ([T, E]) and one metrics row per round.
    assert transitions.observation.shape[:2] == (agent.cfg.num_steps, agent.cfg.num_envs)
    assert transitions.metrics["loss"].shape == (2,)
    with pytest.raises(ValueError, match="multiple of --num-envs x --num-steps"):
        agent.train(key, state, steps + 1)


def test_default_config_is_valid():
    cfg = PPOConfig()
    assert cfg.num_rounds * cfg.steps_per_round == cfg.total_timesteps == cfg.training_steps
    assert cfg.num_evaluations * cfg.eval_every == cfg.training_steps
    assert cfg.eval_every == 20_000  # ten rounds, the cadence from before it counted env steps


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(num_envs=6, num_minibatches=4), r"--num-envs \(6\) must be divisible by --num-min"),
        (
            dict(env_id="CartPole-v9"),
            r"--env-id 'CartPole-v9' is unknown \(did you mean CartPole-v1\?\); valid ids: .*Cart",
        ),
        (dict(torso="transformer"), r"--torso 'transformer' is unknown; choose one of gru"),
        (dict(eval_every=3), r"--eval-every \(3\) must be a multiple of --num-envs x --num-steps"),
        (dict(eval_every=192), r"--eval-every \(192\) .* divides the 256 training steps"),
        (dict(total_timesteps=10), r"--total-timesteps \(10\) is less than one round"),
        (dict(torso="attention", hidden_size=30), r"--hidden-size \(30\) must be divisible"),
        (dict(gamma=1.5), r"--gamma must lie in"),
        (dict(num_seeds=0), r"--num-seeds \(0\) must be at least 1"),
    ],
)
def test_config_rejects_bad_values_naming_the_flag(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_cli_help_and_errors_before_compiling(monkeypatch, capsys):
    code, help_text, _ = main_in_process("ppo_rnn", ["--help"], monkeypatch, capsys)
    assert code == 0
    flags = (
        "--env-id", "--torso", "--num-seeds", "--shared-torso", "--use-prev-action", "--eval-every",
        "--output-dir", "--load", "--checkpoint-every", "--resume",
    )  # fmt: skip
    for flag in flags:
        assert flag in help_text
    bad = ["--num-envs", "6", "--num-minibatches", "4"]
    needle = "--num-envs (6) must be divisible by --num-minibatches (4)"
    refused_in_one_line("ppo_rnn", bad, monkeypatch, capsys, needle)


@pytest.mark.timeout(600)
def test_main_writes_results_resumes_exactly_and_load_evaluates_them(tmp_path, monkeypatch, capsys):
    flags = [
        "--num-envs", "4", "--num-steps", "16", "--hidden-size", "16", "--total-timesteps", "256",
        "--eval-every", "64", "--num-seeds", "2", "--eval-episodes", "4",
    ]  # fmt: skip
    run_dir = stopped_and_resumed(
        "ppo_rnn", flags, "64", tmp_path, signal.SIGINT, monkeypatch, capsys
    )
    names = {path.name for path in run_dir.iterdir()}
    assert names == {"config.json", "curves.npz", "summary.json", "learning_curve.png",
                     "checkpoint.msgpack", "results.csv"}  # fmt: skip
    summary = json.loads((run_dir / "summary.json").read_text())
    per_seed = summary["final_eval_return_per_seed"]
    assert len(per_seed) == 2 and not summary["diverged"]
    assert summary["final_eval_return_iqm"] == pytest.approx(interquartile_mean(per_seed))
    with np.load(run_dir / "curves.npz") as curves:
        assert curves["eval_return"].shape == (2, 4)
        assert curves["loss"].shape == (2, 4) and curves["finite"].all()
        np.testing.assert_array_equal(curves["round_env_steps"][1], [64, 128, 192, 256])
        np.testing.assert_array_equal(curves["eval_env_steps"][0], [64, 128, 192, 256])
        np.testing.assert_allclose(curves["eval_return"][:, -1], per_seed, rtol=1e-6)
    code, out, err = main_in_process(
        "ppo_rnn", ["--load", str(run_dir), "--eval-episodes", "4"], monkeypatch, capsys
    )
    assert code in (0, None), err[-3000:]
    assert "greedy evaluation of" in out


@pytest.mark.timeout(400)
def test_gru_learns_position_only_cartpole_and_beats_its_memoryless_twin():
    """About a minute: 2 seeds x 61,440 steps each for GRU and MLP; greedy evaluation."""

    def final_returns(torso: str) -> np.ndarray:
        cfg = PPOConfig(torso=torso, total_timesteps=61_440, eval_every=60_000, num_seeds=2)
        env, env_params = make(cfg.env_id)
        agent = make_agent(cfg, env, env_params)

        def run(key):
            key, state = agent.init(key)
            key, state, _ = agent.train(key, state, cfg.training_steps)
            _, returns, finished = agent.evaluate(key, state, 500)
            return jnp.where(finished, returns, jnp.nan).mean()

        return np.asarray(run_seeds(run, seed_keys(0, cfg.num_seeds))[0])

    gru, mlp = final_returns("gru"), final_returns("mlp")
    assert interquartile_mean(gru) >= GRU_THRESHOLD, gru
    assert interquartile_mean(mlp) <= MLP_CEILING, mlp


GRU_THRESHOLD = 150.0
MLP_CEILING = 100.0


def test_docs_api_with_user_built_networks():
    """memorax-docs/core-concepts.md, as written there (linen cells, scripts' import path)."""
    import flax.linen as nn
    import optax

    from memorax.networks import MLP, RNN, FeatureExtractor, Network, heads

    env, env_params = make(ENV_ID)
    cfg = PPOConfig(num_envs=8, gamma=0.99)
    actor = Network(
        feature_extractor=FeatureExtractor(observation_extractor=MLP(features=(16,))),
        torso=RNN(cell=nn.GRUCell(features=16)),
        head=heads.Categorical(action_dim=2),
    )
    critic = Network(
        feature_extractor=FeatureExtractor(observation_extractor=MLP(features=(16,))),
        torso=RNN(cell=nn.GRUCell(features=16)),
        head=heads.VNetwork(),
    )
    optimizer = optax.adam(3e-4)
    agent = PPO(cfg, env, env_params, actor, critic, optimizer, optimizer)
    key = jax.random.key(0)
    key, state = agent.init(key)
    key, state, transitions = agent.train(key, state, num_steps=1000)
    assert int(state.env_steps) == 1000
    assert transitions.observation.shape == (cfg.num_steps, 8, 2)
    assert transitions.done.dtype == jnp.bool_ and transitions.reward.shape == (cfg.num_steps, 8)
    assert set(transitions.metrics) >= {"loss", "entropy", "episode_return"}
    _, returns, finished = agent.evaluate(key, state, num_steps=500)
    assert returns.shape == (cfg.eval_episodes,) and bool(finished.all())
    # Each finished greedy episode's return is its length: at least one step, at most 500.
    assert float(returns.min()) >= 1.0 and float(returns.max()) <= 500.0


def _conv_kernels(params) -> list:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [x for path, x in leaves if "'Conv_0']['kernel']" in jax.tree_util.keystr(path)]


def test_image_observations_train_through_a_cnn():
    """Breakout-MinAtar's 10x10x4 frames: make_agent embeds them with a convolution (an MLP on
    the last axis would fail), and a round of updates moves its kernels, losses finite."""
    agent = tiny_agent(env_id="Breakout-MinAtar", num_seeds=1)

    def one_round(key):
        key, state = agent.init(key)
        _, trained, transitions = agent.train(key, state, agent.cfg.steps_per_round)
        return state.params, trained.params, transitions.metrics

    before, after, metrics = jax.jit(one_round)(jax.random.key(0))
    kernels = _conv_kernels(before)
    assert [k.shape for k in kernels] == [(3, 3, 4, 16)] * 2  # actor's and critic's
    assert all(not np.allclose(a, b) for a, b in zip(kernels, _conv_kernels(after), strict=True))
    assert bool(metrics["finite"].all()) and np.isfinite(metrics["loss"]).all()
