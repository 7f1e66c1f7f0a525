"""POPGym's position-only CartPole and Pendulum (and their noisy variants) against popgym itself:
spaces and episode lengths, then step-for-step play from the same hidden state; the noise, which
no two generators can share, by its distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as reference
import pytest

from memorax.environments.popgym_control import TASKS, PositionOnlyCartPole, PositionOnlyPendulum

LEVELS = ("Easy", "Medium", "Hard")
IDS = [f"{noisy}{task}{level}" for task in ("PositionOnlyCartPole", "PositionOnlyPendulum")
       for noisy in ("", "Noisy") for level in LEVELS]  # fmt: skip


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_and_lengths_equal_popgyms(env_id):
    ours = TASKS[env_id]()
    params = ours.default_params
    theirs = getattr(reference, env_id)()
    assert params.max_steps_in_episode == theirs.max_episode_length
    space = ours.observation_space(params)
    np.testing.assert_allclose(space.low, theirs.observation_space.low, rtol=1e-6)
    np.testing.assert_allclose(space.high, theirs.observation_space.high, rtol=1e-6)
    if "CartPole" in env_id:
        assert ours.action_space(params).n == theirs.action_space.n
    else:
        assert ours.action_space(params).shape == theirs.action_space.shape
    assert ours.noise_sigma == pytest.approx(float(np.max(getattr(theirs, "noise_sigma", 0.0))))


def play(ours, theirs, set_theirs, actions, key):
    """Reset ours, put popgym's env into our hidden state, play ``actions`` on both until either
    episode ends, comparing every observation, reward and end. Returns the steps played."""
    params = ours.default_params
    step = jax.jit(ours.step)
    obs, state = ours.reset(key, params)
    their_obs, _ = theirs.reset(seed=0)
    set_theirs(theirs, state)
    for t, action in enumerate(actions):
        obs, state_after, reward, terminated, truncated, info = step(key, state, action, params)
        their_obs, their_reward, their_terminated, their_truncated, _ = theirs.step(
            np.asarray(action)
        )
        final = info["final_observation"]  # ours auto-resets; popgym's does not
        np.testing.assert_allclose(final, their_obs, atol=2e-4, err_msg=f"step {t}")
        assert float(reward) == pytest.approx(their_reward, abs=1e-5), t
        assert (bool(terminated), bool(truncated)) == (their_terminated, their_truncated), t
        if terminated or truncated:
            return t + 1
        state = state_after
    return len(actions)


def set_cartpole(theirs, state):
    theirs.state = np.array([state.x, state.x_dot, state.theta, state.theta_dot], np.float64)
    theirs.steps_beyond_terminated = None


def set_pendulum(theirs, state):
    theirs.state = np.array([state.theta, state.theta_dot], np.float64)


@pytest.mark.parametrize("level", LEVELS)
def test_cartpole_plays_like_popgym_to_termination_and_to_truncation(level):
    rng = np.random.default_rng(0)
    ours = TASKS[f"PositionOnlyCartPole{level}"]()
    theirs = getattr(reference, f"PositionOnlyCartPole{level}")()
    for episode in range(5):  # random actions: the pole falls (terminated)
        actions = rng.integers(0, 2, 200)
        steps = play(ours, theirs, set_cartpole, actions, jax.random.key(episode))
        assert steps < 200
    # A pole held up by a scripted policy reaches the time limit (truncated) on both sides.
    short_ours = PositionOnlyCartPole(max_episode_length=25)
    short_theirs = reference.PositionOnlyCartPole(max_episode_length=25)
    params = short_ours.default_params
    obs, state = short_ours.reset(jax.random.key(7), params)
    short_theirs.reset(seed=0)
    set_cartpole(short_theirs, state)
    for t in range(25):
        action = int(state.theta + 0.5 * state.theta_dot > 0)  # push under the pole
        _, state, reward, terminated, truncated, _ = short_ours.step(
            jax.random.key(t), state, action, params
        )
        _, their_reward, their_terminated, their_truncated, _ = short_theirs.step(action)
        assert (bool(terminated), bool(truncated)) == (their_terminated, their_truncated)
        assert float(reward) == pytest.approx(their_reward) == 1 / 25
    assert truncated and not terminated


@pytest.mark.parametrize("level", LEVELS)
def test_pendulum_plays_like_popgym_for_a_whole_episode(level):
    rng = np.random.default_rng(1)
    ours = TASKS[f"PositionOnlyPendulum{level}"]()
    theirs = getattr(reference, f"PositionOnlyPendulum{level}")()
    length = ours.default_params.max_steps_in_episode
    actions = rng.uniform(-2.5, 2.5, (length, 1)).astype(np.float32)  # beyond the bounds: clipped
    assert play(ours, theirs, set_pendulum, actions, jax.random.key(3)) == length


@pytest.mark.parametrize("task", ["PositionOnlyCartPole", "PositionOnlyPendulum"])
def test_noise_has_popgyms_distribution(task):
    """Noisy minus clean first observations at Hard (sigma 0.3), 2,000 of them, popgym's noise
    added to the same clean observations. The noise is clipped to the space, so compare the
    residuals' quantiles, not a formula: with 4,000 draws a quantile's standard error is below
    0.015 here; allow 0.03 (2 standard errors of a difference)."""
    cls = {
        "PositionOnlyCartPole": PositionOnlyCartPole,
        "PositionOnlyPendulum": PositionOnlyPendulum,
    }
    noisy, clean = cls[task](noise_sigma=0.3), cls[task]()
    params = noisy.default_params
    keys = jax.random.split(jax.random.key(0), 2000)
    obs_noisy, _ = jax.vmap(noisy.reset, (0, None))(keys, params)
    obs_clean, _ = jax.vmap(clean.reset, (0, None))(keys, params)  # same states: same key split
    ours = np.asarray(obs_noisy - obs_clean).ravel()
    theirs_env = getattr(reference, f"Noisy{task}Hard")()
    theirs_env.reset(seed=0)
    # popgym's noise on the same clean observations (clipping depends on where they lie)
    observed = [theirs_env.add_noise_to_obs(clean) - clean for clean in np.asarray(obs_clean)]
    theirs = np.asarray(observed).ravel()
    quantiles = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(
        np.quantile(ours, quantiles), np.quantile(theirs, quantiles), atol=0.03
    )
    assert float(jnp.std(ours)) == pytest.approx(float(np.std(theirs)), abs=0.02)


def test_made_by_popgyms_ids_and_wrong_ids_refused_with_the_fix():
    from memorax.environments import check_env_id, make

    env, params = make("NoisyPositionOnlyCartPoleHard")
    assert (env.noise_sigma, params.max_steps_in_episode) == (0.3, 200)
    with pytest.raises(ValueError, match=r"'RepeatFirstExtreme': RepeatFirst has no difficulty "):
        check_env_id("RepeatFirstExtreme", "--env-id")
    with pytest.raises(ValueError, match=r"unknown \(did you mean PositionOnlyPendulumEasy\?\)"):
        check_env_id("PositionOnlyPendelumEasy", "--env-id")


def test_the_papers_stateless_names_build_the_same_tasks_and_are_benchmarked_once():
    from benchmarks.popgym import families
    from memorax.environments import make

    for level in ("Easy", "Hard"):
        alias, env_id = f"NoisyStatelessPendulum{level}", f"NoisyPositionOnlyPendulum{level}"
        (env, params), (same, same_params) = make(alias), make(env_id)
        assert type(env) is type(same) and env.noise_sigma == same.noise_sigma
        assert params == same_params
    assert "StatelessCartPole" not in families() and "PositionOnlyCartPole" in families()
