"""algorithms/sac_s5.py: the squashed-Gaussian actor on the env's bounds, the soft twin-Q target
and the losses against plain references, replay from every network's stored carry, burn-in
without gradient, config validation, the CLI and a short learning test."""

import json
import signal
from functools import partial
from pathlib import Path

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algorithms.sac_s5 import (
    SAC,
    SACConfig,
    actor_loss,
    critic_loss,
    make_agent,
    soft_q_targets,
    temperature_loss,
)
from memorax.buffers import make_episode_buffer
from memorax.environments import make
from memorax.experiment import run_seeds, seed_keys
from memorax.rollout import StepInput
from memorax.statistics import interquartile_mean
from tests.script_runs import main_in_process, refused_in_one_line, stopped_and_resumed

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> SACConfig:
    settings = dict(
        torso="gru", hidden_size=16, critic_head_size=16, num_envs=4, utd_ratio=0.25,
        batch_size=6, sequence_length=6, burn_in=3, buffer_size=512, learning_starts=256,
        total_timesteps=256 + 4 * 8, eval_every=16, eval_episodes=4, num_seeds=2,
    )  # fmt: skip
    return SACConfig(**{**settings, **overrides})


def tiny_agent(max_steps_in_episode: int | None = None, **overrides) -> SAC:
    cfg = tiny_config(**overrides)
    env, env_params = make(cfg.env_id)
    if max_steps_in_episode is not None:
        env_params = env_params.replace(max_steps_in_episode=max_steps_in_episode)
    return make_agent(cfg, env, env_params)


def _filled(agent: SAC, seed: int = 0, prepare=lambda state: state):
    """An agent's state after its warmup (params unchanged, buffer full of stored carries),
    ``prepare`` applied to its parameters before it acts."""

    def filled(key):  # one program (CI time: not op by op)
        key, state = agent.init(key)
        return agent.warmup(key, prepare(state), agent.cfg.learning_starts)[1]

    return jax.jit(filled)(jax.random.key(seed))


def _sample(agent: SAC, state, seed: int):
    return jax.jit(agent.buffer.sample)(state.buffer_state, jax.random.key(seed))


def _distinct(state):
    """The state with target critics and temperature unlike the online ones, so that mixing up
    any two networks changes every number the tests compare."""
    params = state.params
    target = jax.tree.map(lambda x: 1.3 * x + 0.01, params.critic)
    return state.replace(params=params.replace(target=target, log_alpha=jnp.float32(-0.7)))


# --- the actor's distribution -------------------------------------------------------------------


def squashed_log_prob(u, mean, std, low, high):
    """log density of a = centre + half * tanh(u), u ~ N(mean, std) (diagonal), in numpy."""
    u, mean, std = (np.asarray(x, np.float64) for x in (u, mean, std))
    gaussian = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    half = (np.asarray(high) - np.asarray(low)) / 2
    with np.errstate(divide="ignore"):  # -inf where tanh(u) rounds to +-1
        return (gaussian - np.log(half * (1 - np.tanh(u) ** 2))).sum(-1)


def test_actor_is_a_squashed_gaussian_on_the_env_bounds():
    """Pendulum's torque lies in [-2, 2]: a wide policy's samples fill that range (not [-1, 1]),
    never leave it, and their log-probs equal the change-of-variables formula."""
    agent = tiny_agent(env_id="Pendulum-P-v1")

    @jax.jit  # one program (CI time: not op by op)
    def wide_policy(key):
        key, state = agent.init(key)
        wide = jax.tree.map(lambda p: 30.0 * p, state.params.actor)
        inputs = StepInput(
            observation=jax.random.normal(key, (64, 5, 2)),
            reset=jnp.zeros((64, 5), bool).at[:, 0].set(True),
            prev_action=jnp.zeros((64, 5, 1)),
            prev_reward=jnp.zeros((64, 5)),
        )
        _, dist = agent.policy(wide, inputs, agent.actor.initialize_carry(64))
        action, log_prob = dist.sample_and_log_prob(seed=jax.random.key(1))
        base = dist.distribution
        u = base.sample(seed=jax.random.key(1))  # the same draw, before the squash
        return action, log_prob, u, base.loc, base.scale_diag, dist.mode()

    action, log_prob, u, loc, scale, mode = map(np.asarray, wide_policy(jax.random.key(0)))
    assert action.shape == (64, 5, 1)
    assert float(action.min()) >= -2.0 and float(action.max()) <= 2.0
    assert float(action.min()) < -1.5 and float(action.max()) > 1.5
    np.testing.assert_allclose(action, 2.0 * np.tanh(u), rtol=1e-5, atol=1e-6)
    fine = np.abs(u).max(-1) < 4.0  # where float32 tanh still resolves the density
    expected = squashed_log_prob(u, loc, scale, -2.0, 2.0)
    np.testing.assert_allclose(log_prob[fine], expected[fine], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(mode, 2.0 * np.tanh(loc), rtol=1e-5)


# --- losses against plain references ------------------------------------------------------------


def reference_soft_targets(reward, terminated, truncated, value_next, value_final, known, gamma):
    """Plain loops: y_t = r_t + gamma * V(next) unless the episode ends at t; a truncation
    bootstraps from its final observation's value, which must be known."""
    batch, length = reward.shape
    targets = np.zeros((batch, length - 1))
    valid = np.ones((batch, length - 1), bool)
    for b in range(batch):
        for t in range(length - 1):
            targets[b, t] = reward[b, t]
            if terminated[b, t]:
                continue
            if truncated[b, t]:
                targets[b, t] += gamma * value_final[b, t]
                valid[b, t] = known[b, t]
            else:
                targets[b, t] += gamma * value_next[b, t + 1]
    return targets, valid


def test_soft_q_targets_match_python_loops():
    rng = np.random.default_rng(0)
    batch, length, gamma = 5, 12, 0.9
    reward = rng.normal(size=(batch, length)).astype(np.float32)
    terminated = rng.random((batch, length)) < 0.15
    truncated = rng.random((batch, length)) < 0.2
    # One truncation per row is "replayed": its final observation sits right after it.
    ends = truncated & ~terminated
    first = np.where(ends[:, :-1].any(1), np.argmax(ends[:, :-1], 1), length - 1)
    replayed = ends & (np.arange(length) == first[:, None])
    position = np.arange(length)[None] + (np.arange(length)[None] > first[:, None])
    value = rng.normal(size=(batch, length + 1)).astype(np.float32)
    value_next = np.take_along_axis(value, position, 1)
    value_final = value[:, 1:]  # the value right after step t in the longer sequence
    targets, valid = soft_q_targets(
        jnp.asarray(reward), jnp.asarray(terminated), jnp.asarray(truncated), jnp.asarray(value),
        jnp.asarray(position), jnp.asarray(replayed), gamma,
    )  # fmt: skip
    expected, expected_valid = reference_soft_targets(
        reward, terminated, truncated, value_next, value_final, replayed, gamma
    )
    np.testing.assert_array_equal(np.asarray(valid), expected_valid)
    np.testing.assert_allclose(np.asarray(targets)[expected_valid], expected[expected_valid],
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert 0 < expected_valid.mean() < 1 and replayed.any()


def test_critic_actor_and_temperature_losses_match_plain_formulas():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, 4, 7)).astype(np.float32)
    targets = rng.normal(size=(4, 7)).astype(np.float32)
    valid = rng.random((4, 7)) < 0.7
    expected = sum(((q[i] - targets) ** 2)[valid].mean() for i in range(2))
    assert float(critic_loss(q, targets, valid)) == pytest.approx(expected, rel=1e-5)
    # The targets get no gradient; each critic's gradient is 2 (q_i - y) / n where valid.
    grad = jax.grad(lambda t: critic_loss(jnp.asarray(q), t, jnp.asarray(valid)))(targets)
    assert float(jnp.abs(grad).max()) == 0.0
    grad_q = np.asarray(jax.grad(critic_loss)(jnp.asarray(q), targets, valid))
    np.testing.assert_allclose(grad_q, 2 * (q - targets) * valid / valid.sum(), rtol=1e-5)

    log_prob = rng.normal(size=(4, 7)).astype(np.float32)
    alpha = 0.3
    expected = (alpha * log_prob - q.min(0)).mean()
    assert float(actor_loss(jnp.float32(alpha), log_prob, q)) == pytest.approx(expected, rel=1e-5)

    log_alpha, target_entropy = np.log(0.3), -1.0
    expected = (-alpha * (log_prob + target_entropy)).mean()
    loss = temperature_loss(jnp.float32(log_alpha), log_prob, target_entropy)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Entropy below the target (log-probs high) raises alpha: gradient descent moves it up.
    low_entropy = jnp.full((4, 7), 2.0)
    assert float(jax.grad(temperature_loss)(jnp.float32(0.0), low_entropy, -1.0)) < 0
    assert float(jax.grad(temperature_loss)(jnp.float32(0.0), -low_entropy, -1.0)) > 0


# --- replay from every network's stored carry ---------------------------------------------------


def _step(apply, params, carry, observation, reset, prev_action, prev_reward, *action):
    """One network step on one sequence: returns (carry, output at that step)."""
    inputs = StepInput(
        observation=np.asarray(observation)[None, None],
        reset=np.asarray(reset)[None, None],
        prev_action=np.asarray(prev_action)[None, None],
        prev_reward=np.asarray(prev_reward)[None, None],
    )
    extra = [np.asarray(a)[None, None] for a in action]
    return apply(params, inputs, carry, *extra)


def _longer_steps(seq, reset, b, burn_in):
    """Step inputs of sequence b in replay order: each step, and after the first truncation
    among the trained steps its final observation (no reset, the truncating step's action and
    reward as previous inputs). Returns the inputs, each original step's index among them, and
    the truncation replayed (or None)."""
    length = reset.shape[1]
    ends = seq.truncated[b] & ~seq.terminated[b]
    eligible = [j for j in range(burn_in - 1, length - 1) if ends[j]]
    replayed = eligible[0] if eligible else None
    steps, position, inputs = [], [], seq.inputs
    for j in range(length):
        position.append(len(steps))
        steps.append((inputs.observation[b, j], reset[b, j], inputs.prev_action[b, j],
                      inputs.prev_reward[b, j]))  # fmt: skip
        if j == replayed:
            steps.append((seq.final_observation[b, j], False, seq.action[b, j], seq.reward[b, j]))
    return steps, position, replayed


def _critic_carry(carry, b, i):
    return jax.tree.map(lambda x: x[b : b + 1, 0, i], carry)


def test_targets_and_losses_equal_step_by_step_reference_from_every_stored_carry():
    """The soft targets, the critic loss and the actor loss against a reference that steps the
    actor, each critic and each target critic one step at a time from its own carry stored at
    the sequence's start, with a truncated episode's final observation stepped from its own
    carries. Targets, critics and temperature all differ, so starting any network from another
    network's carry (or from zero), or mixing up two networks, fails."""
    agent = tiny_agent(max_steps_in_episode=7, use_prev_action=True, use_prev_reward=True,
                       env_id="Pendulum-P-v1", torso="gru", critic_torso="lstm")  # fmt: skip
    cfg = agent.cfg
    state = _filled(agent, prepare=_distinct)
    params = state.params
    alpha = float(jnp.exp(params.log_alpha))
    sample = _sample(agent, state, 1)
    # Every network's start carry replaced by its own random values: their effect on the
    # trained steps then far exceeds the tolerance, so a network started from another's carry,
    # from zero or from a later step fails. (That the stored carries are the ones that acted is
    # the next test.)
    leaves, tree = jax.tree.flatten(sample.experience.carry)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    scrambled = [
        jax.random.uniform(k, x.shape, x.dtype, -1.0, 1.0)
        for k, x in zip(keys, leaves, strict=True)
    ]
    experience = sample.experience.replace(carry=jax.tree.unflatten(tree, scrambled))
    sample = sample.replace(experience=experience)
    target_key, actor_key = jax.random.key(2), jax.random.key(3)

    @jax.jit  # compiled as one program, as training does (CI time: not op by op)
    def losses(params, experience, target_key, actor_key):
        replay = agent._replay(experience)
        targets, valid = agent._targets(params, experience, replay, target_key)
        critic, _ = agent._critic_loss(params.critic, replay, targets, valid)
        actor, _ = agent._actor_loss(
            params.actor, params.log_alpha, params.critic, replay, actor_key
        )
        return targets, valid, critic, actor

    targets, valid, critic, actor = losses(params, sample.experience, target_key, actor_key)
    targets, valid = np.asarray(targets), np.asarray(valid)

    seq = jax.tree.map(np.asarray, sample.experience)
    reset = np.asarray(sample.reset)
    burn, trained, gamma = cfg.burn_in, cfg.sequence_length, cfg.gamma
    batch, longer = cfg.batch_size, cfg.replay_length + 1
    one_critic = [jax.tree.map(lambda x, i=i: np.asarray(x)[i], params.critic) for i in range(2)]
    one_target = [jax.tree.map(lambda x, i=i: np.asarray(x)[i], params.target) for i in range(2)]
    stored = seq.carry  # numpy: sliced below

    @jax.jit  # one step at a time, compiled once
    def actor_step(p, i, carry):
        return agent.actor.apply(p, i.observation, i.reset, carry, i.prev_action, i.prev_reward)

    @jax.jit
    def critic_step(p, i, carry, action):
        return agent.critic.apply(
            p, i.observation, i.reset, carry, i.prev_action, i.prev_reward, action
        )

    # Per sequence: the actor's Gaussian (mean, std) and every critic's features per replay step.
    mean, std = np.zeros((batch, longer, 1)), np.ones((batch, longer, 1))
    layout = []
    for b in range(batch):
        steps, position, replayed = _longer_steps(seq, reset, b, burn)
        layout.append((steps, position, replayed))
        carry = jax.tree.map(lambda x, b=b: x[b : b + 1, 0], stored.actor)
        for k, inputs in enumerate(steps):
            carry, dist = _step(actor_step, params.actor, carry, *inputs)
            mean[b, k] = np.asarray(dist.distribution.loc[0, 0])
            std[b, k] = np.asarray(dist.distribution.scale_diag[0, 0])

    def squashed_draw(key, mean, std):
        """The policy's draw for a given key: the same normal noise (Transformed samples its
        base with the key), squashed onto [-2, 2] by hand, and its log-prob in numpy."""
        u = np.asarray(distrax.MultivariateNormalDiag(mean, std).sample(seed=key))
        return 2.0 * np.tanh(u), squashed_log_prob(u, mean, std, -2.0, 2.0)

    next_action, next_log_prob = squashed_draw(target_key, mean, std)

    def q_along(params_list, carry_tree, b, steps, actions):
        """Each of the two critics stepped over steps from its stored carry: [2, len(steps)]."""
        out = np.zeros((2, len(steps)))
        for i in range(2):
            carry = _critic_carry(carry_tree, b, i)
            for k, inputs in enumerate(steps):
                carry, q = _step(critic_step, params_list[i], carry, *inputs, actions[k])
                out[i, k] = float(q[0, 0])
        return out

    expected_targets = np.zeros((batch, trained))
    expected_valid = np.ones((batch, trained), bool)
    q_taken = np.zeros((2, batch, trained))
    truncation_targets = 0
    for b in range(batch):
        steps, position, replayed = layout[b]
        q_next = q_along(one_target, stored.target, b, steps, next_action[b])
        value = q_next.min(0) - alpha * next_log_prob[b]
        taken = [seq.action[b, j] for j in range(cfg.replay_length)]
        taken_long = [np.zeros(1)] * len(steps)
        for j, k in enumerate(position):
            taken_long[k] = taken[j]
        q_online = q_along(one_critic, stored.critic, b, steps, taken_long)
        for i, t in enumerate(range(burn, burn + trained)):
            q_taken[:, b, i] = q_online[:, position[t]]
            y = seq.reward[b, t]
            if seq.terminated[b, t]:
                pass
            elif seq.truncated[b, t]:
                expected_valid[b, i] = t == replayed
                truncation_targets += t == replayed
                y += gamma * value[position[t] + 1]  # the inserted final observation
            else:
                y += gamma * value[position[t + 1]]
            expected_targets[b, i] = y
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_allclose(targets[valid], expected_targets[valid], rtol=1e-4, atol=1e-4)
    assert truncation_targets > 0  # the test did exercise the truncation bootstrap
    expected_critic = sum(((q_taken[i] - expected_targets) ** 2)[valid].mean() for i in range(2))
    assert float(critic) == pytest.approx(expected_critic, rel=1e-4)

    # The actor's loss samples over the steps after burn-in, from its stored carry burnt in.
    new_action, log_prob = squashed_draw(actor_key, mean[:, burn:], std[:, burn:])
    per_step = []
    for b in range(batch):
        steps, position, _ = layout[b]
        actions = [np.zeros(1)] * burn + list(new_action[b])
        q_new = q_along(one_critic, stored.critic, b, steps, actions)
        for t in range(burn, burn + trained):
            k = position[t]
            per_step.append(alpha * log_prob[b, k - burn] - q_new[:, k].min())
    assert float(actor) == pytest.approx(np.mean(per_step), rel=1e-4, abs=1e-4)


def test_stored_carries_are_the_carries_that_acted():
    """Replaying a sampled sequence from its first stored carries reaches each later step's
    stored carries exactly, for the actor, both critics and both target critics."""
    agent = tiny_agent(max_steps_in_episode=9, env_id="Pendulum-P-v1", torso="s5")
    # Acting with target critics unlike the critics, so that their carries differ too.
    state = _filled(agent, prepare=_distinct)
    sample = _sample(agent, state, 2)
    seq = sample.experience
    _, _, _, _, start = jax.jit(agent._replay)(seq)
    # The stored step inputs carry the buffer's own reset flags.
    np.testing.assert_array_equal(np.asarray(seq.inputs.reset), np.asarray(sample.reset))

    @partial(jax.jit, static_argnums=2)  # one program per length (CI time: not op by op)
    def replayed(params, seq, steps):
        head = jax.tree.map(lambda x: x[:, :steps], seq.inputs)
        actor, _ = agent.policy(params.actor, head, start.actor)
        critic, _ = agent.q_values(params.critic, head, start.critic, seq.action[:, :steps])
        target, _ = agent.q_values(params.target, head, start.target, seq.action[:, :steps])
        return actor, critic, target

    for steps in (1, 4, agent.cfg.replay_length - 1):
        actor, critic, target = replayed(state.params, seq, steps)
        stored = jax.tree.map(lambda x, s=steps: np.asarray(x)[:, s], seq.carry)
        for got, want in ((actor, stored.actor), (critic, stored.critic),
                          (target, stored.target)):  # fmt: skip
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5, rtol=0)
    gap = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), start.critic, start.target)
    assert max(jax.tree.leaves(gap)) > 1e-3


@pytest.mark.parametrize("torso", ["gru", "s5"])
def test_burn_in_gets_no_gradient(torso):
    """Neither the critics' nor the actor's loss sends gradient into a burn-in step's input or
    into any stored carry; every trained step gets some."""
    agent = tiny_agent(torso=torso, env_id="Pendulum-P-v1")
    cfg = agent.cfg
    state = _filled(agent)
    params = state.params
    seq = _sample(agent, state, 3).experience
    targets, valid = jax.jit(lambda p, s, k: agent._targets(p, s, agent._replay(s), k))(
        params, seq, jax.random.key(4)
    )

    def with_inputs(observation, carry):
        inputs = seq.inputs.replace(observation=observation)
        return agent._replay(seq.replace(inputs=inputs, carry=carry))

    def critic(observation, carry):
        return agent._critic_loss(params.critic, with_inputs(observation, carry), targets, valid)[0]

    def actor(observation, carry):
        replay = with_inputs(observation, carry)
        key = jax.random.key(5)
        return agent._actor_loss(params.actor, params.log_alpha, params.critic, replay, key)[0]

    for loss in (critic, actor):
        gradient = jax.jit(jax.grad(loss, argnums=(0, 1)))  # CI time: one program, not op by op
        obs_grad, carry_grad = gradient(seq.inputs.observation, seq.carry)
        obs_grad = np.abs(np.asarray(obs_grad)).sum(axis=(0, 2))  # [L]
        assert np.all(obs_grad[: cfg.burn_in] == 0.0)
        assert np.all(obs_grad[cfg.burn_in : cfg.burn_in + cfg.sequence_length] > 0.0)
        assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(carry_grad))


def test_update_moves_targets_by_polyak_and_alpha_by_its_own_optimizer():
    agent = tiny_agent(env_id="Pendulum-P-v1", tau=0.1)
    state = _distinct(_filled(agent))
    updated, metrics = jax.jit(agent._update)(state, jax.random.key(6))
    old, new = state.params, updated.params
    expected = jax.tree.map(lambda c, t: 0.1 * c + 0.9 * t, new.critic, old.target)
    for got, want in zip(jax.tree.leaves(new.target), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old.actor,
                                            new.actor)))  # fmt: skip
    # Adam's first step moves log(alpha) by the learning rate, against the gradient's sign.
    step = float(new.log_alpha - old.log_alpha)
    assert abs(step) == pytest.approx(agent.cfg.alpha_lr, rel=1e-3)
    assert (step > 0) == (float(metrics["entropy"]) < agent.target_entropy)
    assert int(updated.updates) == 1


def test_train_is_resumable_bit_for_bit():
    """train(n1) then train(n2) equals train(n1 + n2): keys, parameters, buffer and all."""
    agent = tiny_agent(env_id="Pendulum-P-v1")
    state = _filled(agent)
    train = jax.jit(agent.train, static_argnums=2)
    key, steps = jax.random.key(5), agent.cfg.steps_per_round
    key_a, once, transitions = train(key, state, 2 * steps)
    key_b, twice, _ = train(*train(key, state, steps)[:2], steps)
    assert jnp.array_equal(jax.random.key_data(key_a), jax.random.key_data(key_b))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), once, twice))
    assert transitions.metrics["critic_loss"].shape == (2,)  # one row per round
    with pytest.raises(ValueError, match="multiple of --num-envs x the env steps per round"):
        agent.train(key, state, steps + 1)


# --- configuration, CLI and API -----------------------------------------------------------------


def test_default_config_is_valid():
    cfg = SACConfig()
    assert (cfg.torso, cfg.critic_torso, cfg.env_id) == ("s5", None, "Pendulum-P-v1")
    assert cfg.num_evaluations * cfg.eval_every + cfg.learning_starts == cfg.total_timesteps
    assert cfg.updates_per_round / cfg.steps_per_round == cfg.utd_ratio


@pytest.mark.parametrize(
    "utd,envs,updates,steps", [(0.25, 8, 2, 1), (0.1, 8, 4, 5), (1.0, 4, 4, 1), (0.05, 4, 1, 5)]
)
def test_utd_ratio_sets_updates_and_env_steps_per_round(utd, envs, updates, steps):
    cfg = tiny_config(utd_ratio=utd, num_envs=envs, learning_starts=320, total_timesteps=640,
                      eval_every=80)  # fmt: skip
    assert (cfg.updates_per_round, cfg.env_steps_per_round) == (updates, steps)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(env_id="Pendulum-v9"), r"--env-id 'Pendulum-v9' is unknown"),
        (dict(torso="transformer"), r"--torso 'transformer' is unknown; choose one of"),
        (dict(critic_torso="rnn"), r"--critic-torso 'rnn' is unknown; choose one of"),
        (
            dict(eval_every=6),
            r"--eval-every \(6\) must be a multiple of --num-envs x the env "
            r"steps per round that --utd-ratio sets = 4 env steps",
        ),
        (dict(eval_every=12), r"--eval-every \(12\) must divide the 32 training steps"),
        (dict(buffer_size=32), r"must fit in one env's share of --buffer-size \(8\)"),
        (dict(learning_starts=32), r"--learning-starts \(32\) must hold one replayed sequence"),
        (dict(buffer_size=514), r"--buffer-size \(514\) must be a multiple of --num-envs \(4\)"),
        (dict(total_timesteps=256), r"--total-timesteps \(256\) must exceed --learning-starts"),
        (dict(tau=0.0), r"--gamma and --tau must lie in \(0, 1\]"),
        (dict(burn_in=-1), r"--burn-in \(-1\) must be at least 0"),
        (dict(actor_lr=0.0), r"--actor-lr must be positive"),
        (dict(alpha_lr=-1e-3), r"--alpha-lr must be positive"),
        (dict(utd_ratio=0.0), r"--utd-ratio must be positive"),
        (dict(utd_ratio=0.001), r"--utd-ratio 0.001 x --num-envs 4 must be a ratio of small"),
        (dict(batch_size=0), r"--batch-size \(0\) must be at least 1"),
    ],
)
def test_config_rejects_bad_values_naming_the_flag(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_discrete_actions_are_refused_with_the_reason():
    cfg = tiny_config(env_id="CartPole-P-v1")
    env, env_params = make(cfg.env_id)
    with pytest.raises(ValueError, match="SAC needs continuous ones"):
        make_agent(cfg, env, env_params)


def test_a_buffer_that_does_not_fit_the_config_is_refused():
    agent = tiny_agent()
    cfg = agent.cfg
    short = make_episode_buffer(
        max_length=cfg.buffer_size, min_length=cfg.learning_starts, sample_batch_size=8,
        sample_sequence_length=cfg.replay_length - 1, add_batch_size=cfg.num_envs,
    )  # fmt: skip
    parts = (agent.actor, agent.critic, optax.adam(1e-3), optax.adam(1e-3), optax.adam(1e-3))
    with pytest.raises(ValueError, match=r"replays --burn-in \+ --sequence-length \+ 1"):
        SAC(cfg, agent.env, agent.env_params, *parts, short)


def test_cli_help_and_errors_before_compiling(monkeypatch, capsys):
    code, help_text, _ = main_in_process("sac_s5", ["--help"], monkeypatch, capsys)
    assert code == 0
    flags = (
        "--torso", "--critic-torso", "--utd-ratio", "--num-envs", "--actor-lr", "--critic-lr",
        "--alpha-lr", "--burn-in", "--tau", "--target-entropy", "--load", "--checkpoint-every",
        "--resume",
    )  # fmt: skip
    for flag in flags:
        assert flag in help_text
    bad = ["--utd-ratio", "0"]
    refused_in_one_line("sac_s5", bad, monkeypatch, capsys, "--utd-ratio must be positive")


@pytest.mark.timeout(400)
def test_main_writes_results_resumes_exactly_and_load_evaluates_them(tmp_path, monkeypatch, capsys):
    flags = [
        "--torso", "gru", "--hidden-size", "16", "--critic-head-size", "16", "--num-envs", "4",
        "--batch-size", "6", "--sequence-length", "6", "--burn-in", "3", "--buffer-size", "512",
        "--learning-starts", "256", "--total-timesteps", "320", "--eval-every", "16",
        "--num-seeds", "2", "--eval-episodes", "4",
    ]  # fmt: skip
    run_dir = stopped_and_resumed(
        "sac_s5", flags, "16", tmp_path, signal.SIGINT, monkeypatch, capsys
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["final_eval_return_per_seed"]) == 2 and not summary["diverged"]
    with np.load(run_dir / "curves.npz") as curves:
        # 0.25 updates per env step with 4 envs: one round (one update) per step of the envs.
        assert curves["critic_loss"].shape == (2, 16) and curves["finite"].all()
        np.testing.assert_array_equal(curves["round_env_steps"][1, [0, -1]], [260, 320])
        np.testing.assert_array_equal(curves["eval_env_steps"][0], [272, 288, 304, 320])
    code, out, err = main_in_process(
        "sac_s5", ["--load", str(run_dir), "--eval-episodes", "4"], monkeypatch, capsys
    )
    assert code in (0, None), err[-3000:]
    assert f"deterministic evaluation of {run_dir}: per-seed return [" in out
    saved = np.asarray(summary["final_eval_return_per_seed"], float)
    assert np.all(np.isfinite(saved)) and np.all(saved < 0)  # Pendulum's returns are negative


# Alone it takes 3-4 minutes; beside another test worker on 2 cores it took 501 s in CI, close to
# the 600 s hang guard (pyproject.toml), so it gets twice that.
@pytest.mark.timeout(1200)
def test_s5_learns_position_only_pendulum_and_beats_its_memoryless_twin():
    """About three minutes (S5 134 s, MLP 44 s on 2 cores): 2 seeds x 40,000 steps each;
    deterministic evaluation. Without memory the pendulum's velocity is unknown and the
    swing-up fails."""

    def final_returns(torso: str) -> np.ndarray:
        cfg = SACConfig(torso=torso, total_timesteps=LEARNING_STEPS, num_seeds=2)
        env, env_params = make(cfg.env_id)
        agent = make_agent(cfg, env, env_params)

        def run(key):
            key, state = agent.init(key)
            key, state = agent.warmup(key, state, cfg.learning_starts)
            key, state, _ = agent.train(key, state, cfg.training_steps)
            _, returns, finished = agent.evaluate(key, state, 200)
            return jnp.where(finished, returns, jnp.nan).mean()

        return np.asarray(run_seeds(run, seed_keys(0, cfg.num_seeds))[0])

    s5, mlp = final_returns("s5"), final_returns("mlp")
    assert interquartile_mean(s5) >= S5_THRESHOLD, s5
    assert interquartile_mean(mlp) <= MLP_CEILING, mlp


LEARNING_STEPS = 40_000
S5_THRESHOLD = -400.0  # measured -211.0 (seeds 0, 1: -248.3, -173.7); S5 solves it by ~40k
MLP_CEILING = -600.0  # measured -1272.9 (-1384.1, -1161.7)


def test_docs_api_with_user_built_parts():
    """SAC(cfg, env, env_params, actor, critic, ...) from parts a user builds (the issue's API),
    then init -> warmup -> train -> evaluate."""
    from memorax.networks import MLP, FeatureExtractor, Network, heads
    from memorax.networks.sequence_models import S5

    cfg = tiny_config(torso="s5", env_id="Pendulum-P-v1")
    env, env_params = make(cfg.env_id)

    def network(head):
        return Network(
            feature_extractor=FeatureExtractor(observation_extractor=MLP(features=(16,))),
            torso=S5(hidden_dim=16, state_dim=16),
            head=head,
        )

    actor = network(heads.SquashedGaussian(action_dim=1, action_low=-2.0, action_high=2.0))
    critic = network(heads.ContinuousQNetwork(features=(16,)))
    buffer = make_episode_buffer(
        max_length=cfg.buffer_size, min_length=cfg.learning_starts,
        sample_batch_size=cfg.batch_size, sample_sequence_length=cfg.replay_length,
        add_batch_size=cfg.num_envs, sequence_starts="any",
    )  # fmt: skip
    agent = SAC(cfg, env, env_params, actor, critic, optax.adam(3e-4), optax.adam(1e-3),
                optax.adam(3e-4), buffer)  # fmt: skip
    key, state = agent.init(jax.random.key(0))
    key, state = agent.warmup(key, state, cfg.learning_starts)
    assert bool(buffer.can_sample(state.buffer_state))
    warm_actions = state.buffer_state.experience.action  # uniformly random in [-2, 2]
    assert float(warm_actions.min()) < -1.5 and float(warm_actions.max()) > 1.5
    key, trained, transitions = agent.train(key, state, cfg.training_steps)
    assert int(trained.updates) == cfg.training_steps * cfg.utd_ratio
    assert int(trained.env_steps) == cfg.total_timesteps
    assert transitions.observation.shape == (1, cfg.num_envs, 2)
    rounds = cfg.training_steps // cfg.steps_per_round
    assert transitions.metrics["critic_loss"].shape == (rounds,)
    assert set(transitions.metrics) >= {"actor_loss", "alpha", "entropy", "episode_return"}
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, trained.params)
    assert all(jax.tree.leaves(changed))
    _, returns, finished = agent.evaluate(key, trained, 200)
    assert returns.shape == (cfg.eval_episodes,) and bool(finished.all())
    assert bool(jnp.all(returns < 0.0))
