"""Environments: memory tasks against POPGym's definitions, partial observability against gymnax's
full envs, episode statistics against a hand count, and the make() registry.

Rollouts are one jitted lax.scan, vmapped over episodes, so the file stays fast on a small CPU.
"""

import math
import urllib.request
from collections.abc import Callable
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.utils import load_mnist

from memorax.environments import (
    MEMORY_TASKS,
    PARTIALLY_OBSERVED,
    EpisodeStatistics,
    FlickerObservation,
    GaussianNoiseObservation,
    check_env_id,
    make,
    registered_envs,
)
from memorax.networks import FeatureExtractor, observation_extractor

# POPGym's settings, written out independently of the code under test: cards in the deal, k,
# steps per episode, steps that are scored (each worth 1 / scored), and number of actions.
CARD_TASKS = {
    "RepeatFirstEasy": dict(cards=52, length=51, scored=51, actions=4),
    "RepeatFirstMedium": dict(cards=416, length=415, scored=415, actions=4),
    "RepeatFirstHard": dict(cards=832, length=831, scored=831, actions=4),
    "RepeatPreviousEasy": dict(cards=52, k=4, length=51, scored=48, actions=4),
    "RepeatPreviousMedium": dict(cards=104, k=32, length=103, scored=72, actions=4),
    "RepeatPreviousHard": dict(cards=156, k=64, length=155, scored=92, actions=4),
    # Counts run from 0 to cards / kinds inclusive: 26 colours-of-a-kind, 26 suits, 16 ranks.
    "CountRecallEasy": dict(cards=52, kinds=2, length=51, scored=51, actions=27),
    "CountRecallMedium": dict(cards=104, kinds=4, length=103, scored=103, actions=27),
    "CountRecallHard": dict(cards=208, kinds=13, length=207, scored=207, actions=17),
    "AutoencodeEasy": dict(cards=52, length=103, scored=52, actions=4),
    "AutoencodeMedium": dict(cards=104, length=207, scored=104, actions=4),
    "AutoencodeHard": dict(cards=156, length=311, scored=156, actions=4),
}

# POPGym's constructor settings of each difficulty (Morad et al. 2023), again written out here.
POPGYM_SETTINGS = {
    "RepeatFirstEasy": dict(num_decks=1),
    "RepeatFirstMedium": dict(num_decks=8),
    "RepeatFirstHard": dict(num_decks=16),
    "RepeatPreviousEasy": dict(num_decks=1, k=4),
    "RepeatPreviousMedium": dict(num_decks=2, k=32),
    "RepeatPreviousHard": dict(num_decks=3, k=64),
    "CountRecallEasy": dict(num_decks=1, attribute="colors"),
    "CountRecallMedium": dict(num_decks=2, attribute="suits"),
    "CountRecallHard": dict(num_decks=4, attribute="ranks"),
    "AutoencodeEasy": dict(num_decks=1),
    "AutoencodeMedium": dict(num_decks=2),
    "AutoencodeHard": dict(num_decks=3),
}


def perfect_memory_action(env_id: str, history: jax.Array, t: jax.Array) -> jax.Array:
    """The right answer from every observation so far, history[: t + 1]: [T, F] (a perfect memory).

    Reading the answer off the observations, not the env's state, also shows that the task is
    solvable from what the agent sees.
    """
    spec = CARD_TASKS[env_id]
    seen = jnp.arange(history.shape[0]) <= t
    if env_id.startswith("RepeatFirst"):
        return jnp.argmax(history[0, :4])
    if env_id.startswith("RepeatPrevious"):
        return jnp.argmax(history[jnp.maximum(t + 1 - spec["k"], 0), :4])
    if env_id.startswith("CountRecall"):
        kinds = spec["kinds"]
        dealt = jnp.argmax(history[:, :kinds], axis=-1)
        query = jnp.argmax(history[t, kinds:])
        return jnp.sum((dealt == query) & seen)
    # Autoencode: recite the watched cards last to first once play starts at t = cards - 1.
    cards = spec["cards"]
    position = jnp.clip(2 * (cards - 1) - t, 0, cards - 1)
    return jnp.argmax(history[position, :4])


def rollout(
    env: Any,
    params: Any,
    policy: Callable,
    key: jax.Array,
    num_steps: int,
    num_episodes: int,
    keep_history: bool = False,
) -> dict[str, jax.Array]:
    """Runs ``num_episodes`` envs for ``num_steps`` each from reset: outputs are [E, T, ...].

    ``policy(key, obs, history, t)`` sees the current observation, all observations of the
    current lane so far ([num_steps + 1, F], only with ``keep_history``: it is costly to carry)
    and the step index t.
    """

    def episode(key: jax.Array) -> dict[str, jax.Array]:
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)
        history_length = num_steps + 1 if keep_history else 1
        history = jnp.zeros((history_length, *obs.shape), obs.dtype).at[0].set(obs)

        def one_step(carry, t):
            obs, state, history, key = carry
            key, policy_key, step_key = jax.random.split(key, 3)
            action = policy(policy_key, obs, history, t)
            next_obs, state, reward, terminated, truncated, info = env.step(
                step_key, state, action, params
            )
            if keep_history:
                history = history.at[t + 1].set(next_obs)
            out = dict(
                obs=obs, action=action, reward=reward, terminated=terminated, truncated=truncated
            )
            out.update({name: info[name] for name in info if name.startswith("returned")})
            out["final_observation"] = info["final_observation"]
            return (next_obs, state, history, key), out

        _, outputs = jax.lax.scan(
            one_step, (obs, state, history, key), jnp.arange(num_steps, dtype=jnp.int32)
        )
        return outputs

    return jax.jit(jax.vmap(episode))(jax.random.split(key, num_episodes))


def uniform_policy(num_actions: int) -> Callable:
    return lambda key, obs, history, t: jax.random.randint(key, (), 0, num_actions)


@pytest.mark.parametrize("env_id", list(CARD_TASKS))
def test_card_task_spaces_and_perfect_memory_earns_full_return(env_id: str) -> None:
    spec = CARD_TASKS[env_id]
    env, params = make(env_id)
    assert env.action_space(params).n == spec["actions"]
    assert env.observation_space(params).shape == env.reset(jax.random.key(0), params)[0].shape

    def policy(key, obs, history, t):
        return perfect_memory_action(env_id, history, t)

    out = rollout(env, params, policy, jax.random.key(1), spec["length"], 4, keep_history=True)
    np.testing.assert_allclose(out["reward"].sum(axis=1), 1.0, atol=1e-5)
    scored = np.count_nonzero(np.asarray(out["reward"]), axis=1)
    assert (scored == spec["scored"]).all()
    # The episode ends by itself, exactly at its documented length, and is never truncated.
    terminated = np.asarray(out["terminated"])
    assert terminated[:, -1].all() and not terminated[:, :-1].any()
    assert not np.asarray(out["truncated"]).any()


@pytest.mark.parametrize("env_id", list(CARD_TASKS))
def test_card_task_random_policy_matches_analytic_return(env_id: str) -> None:
    spec = CARD_TASKS[env_id]
    env, params = make(env_id)
    # A uniform action is right with probability p, independently at each of the n scored steps,
    # each worth +-1/n: the return has mean 2p - 1 and variance 4p(1 - p) / n. The mean of E
    # episodes then lies within 5 standard errors of it except with probability < 1e-6.
    p, n, num_episodes = 1.0 / spec["actions"], spec["scored"], 1000
    mean, std = 2 * p - 1, math.sqrt(4 * p * (1 - p) / n)
    out = rollout(
        env,
        params,
        uniform_policy(spec["actions"]),
        jax.random.key(2),
        spec["length"],
        num_episodes,
    )
    returns = np.asarray(out["reward"]).sum(axis=1)
    assert abs(returns.mean() - mean) < 5 * std / math.sqrt(num_episodes)
    assert np.all(np.abs(returns) <= 1.0 + 1e-5)


def test_card_task_ids_have_popgyms_settings_and_are_named_by_their_id() -> None:
    assert set(POPGYM_SETTINGS) == set(CARD_TASKS) == set(MEMORY_TASKS) - {"MemoryChain-bsuite"}
    for env_id, settings in POPGYM_SETTINGS.items():
        env, params = make(env_id)
        assert {name: getattr(env, name) for name in settings} == settings, env_id
        assert env_id.startswith(type(env).__name__)
        assert env.name == env_id
        assert params.max_steps_in_episode == env.episode_length == CARD_TASKS[env_id]["length"]
    # A keyword overrides its difficulty's setting and leaves the others, and the name, as they are.
    env, params = make("RepeatPreviousMedium", k=8)
    assert (env.num_decks, env.k, env.name) == (2, 8, "RepeatPreviousMedium")
    assert params.max_steps_in_episode == 103


def test_autoencode_shows_cards_while_watching_and_hides_them_while_playing() -> None:
    env, params = make("AutoencodeEasy")
    out = rollout(env, params, uniform_policy(4), jax.random.key(3), 103, num_episodes=2)
    obs = np.asarray(out["obs"])  # [E, 103, 5]: observations at t = 0 .. 102
    cards, play = obs[..., :4], obs[..., 4]
    assert (cards[:, :52].sum(-1) == 1).all()  # one card shown at each watch step
    assert (cards[:, 52:] == 0).all()  # hidden while playing
    assert (play[:, :51] == 0).all() and (play[:, 51:] == 1).all()  # the last card announces play
    # The 52 cards shown form a full deck: 13 of each suit.
    assert (cards[:, :52].sum(1) == 13).all()


def test_count_recall_can_ask_for_every_count() -> None:
    env, params = make("CountRecallEasy")
    _, state = env.reset(jax.random.key(0), params)
    # Every card of kind 0 dealt and kind 0 queried: the answer is 26, one more than POPGym's
    # Discrete(26) can express.
    state = state.replace(
        query=jnp.int32(0), undealt_values=jnp.array([0, 1], jnp.int32), time=jnp.int32(50)
    )
    assert env.action_space(params).contains(26)
    _, _, reward, *_ = env.step(jax.random.key(1), state, 26, params)
    assert reward > 0


def test_memory_task_time_limit_truncates_before_the_natural_end() -> None:
    env, params = make("RepeatPreviousEasy", max_steps_in_episode=10)
    out = rollout(env, params, uniform_policy(4), jax.random.key(4), 25, num_episodes=2)
    truncated = np.asarray(out["truncated"])
    assert truncated[:, [9, 19]].all() and truncated.sum() == 4
    assert not np.asarray(out["terminated"]).any()


@pytest.mark.parametrize("env_id", list(PARTIALLY_OBSERVED))
def test_partial_observations_equal_components_of_the_full_env(env_id: str) -> None:
    full_id = {"CartPole": "CartPole-v1", "Pendulum": "Pendulum-v1"}[env_id.split("-")[0]]
    indices = {
        "P": {"CartPole": [0, 2], "Pendulum": [0, 1]},
        "V": {"CartPole": [1, 3], "Pendulum": [2]},
    }
    index = indices[env_id.split("-")[1]][env_id.split("-")[0]]
    env, params = make(env_id)
    full_env, full_params = gymnax.make(full_id)
    action_space = full_env.action_space(full_params)

    def policy(key, obs, history, t):
        return action_space.sample(key)

    # Same keys and actions in both; 250 steps span CartPole failures and Pendulum's time limit.
    partial = rollout(env, params, policy, jax.random.key(5), 250, num_episodes=3)
    full = rollout(full_env, full_params, policy, jax.random.key(5), 250, num_episodes=3)
    # Equal up to float32 rounding: XLA may fuse the two jitted graphs' arithmetic differently.
    np.testing.assert_allclose(partial["obs"], np.asarray(full["obs"])[..., index], 1e-5, 1e-6)
    np.testing.assert_allclose(
        partial["final_observation"], np.asarray(full["final_observation"])[..., index], 1e-5, 1e-6
    )
    for name in ("action", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(partial[name], full[name])
    assert np.asarray(full["terminated"] | full["truncated"]).any()  # auto-reset was exercised
    assert env.observation_space(params).shape == (len(index),)
    high = np.asarray(full_env.observation_space(full_params).high)
    np.testing.assert_array_equal(env.observation_space(params).high, high[index])


def test_cartpole_pole_falling_terminates_and_time_limit_truncates() -> None:
    env, params = make("CartPole-P-v1", max_steps_in_episode=10)
    # Alternating pushes keep the pole up for 10 steps, so a 10-step limit truncates.
    alternate = rollout(env, params, lambda k, o, h, t: t % 2, jax.random.key(6), 10, 4)
    assert np.asarray(alternate["truncated"])[:, -1].all()
    assert not np.asarray(alternate["truncated"])[:, :-1].any()
    assert not np.asarray(alternate["terminated"]).any()
    # Pushing right forever makes the pole fall long before CartPole's 500-step limit.
    env, params = make("CartPole-P-v1")
    push = rollout(env, params, lambda k, o, h, t: 1, jax.random.key(7), 100, 4)
    terminated, truncated = np.asarray(push["terminated"]), np.asarray(push["truncated"])
    assert terminated.any(axis=1).all() and not truncated.any()


def hand_counted_episodes(reward: np.ndarray, done: np.ndarray) -> tuple[list, list]:
    """(return, length) of each finished episode of one env, counted with a plain loop."""
    returns, lengths, episode_return, episode_length = [], [], 0.0, 0
    for r, d in zip(reward, done, strict=True):
        episode_return, episode_length = episode_return + float(r), episode_length + 1
        if d:
            returns.append(episode_return)
            lengths.append(episode_length)
            episode_return, episode_length = 0.0, 0
    return returns, lengths


@pytest.mark.parametrize("env_id", ["CartPole-P-v1", "RepeatPreviousEasy"])
def test_episode_statistics_match_a_hand_count(env_id: str) -> None:
    env, params = make(env_id)
    env = EpisodeStatistics(env)
    num_actions = env.action_space(params).n
    out = rollout(env, params, uniform_policy(num_actions), jax.random.key(8), 160, 4)
    done = np.asarray(out["terminated"] | out["truncated"])
    np.testing.assert_array_equal(out["returned_episode"], done)
    for lane in range(4):
        returns, lengths = hand_counted_episodes(np.asarray(out["reward"][lane]), done[lane])
        assert len(returns) >= 2  # several episodes, so the counters restart with auto-reset
        ended = done[lane]
        np.testing.assert_allclose(out["returned_episode_returns"][lane][ended], returns, 1e-5)
        np.testing.assert_array_equal(out["returned_episode_lengths"][lane][ended], lengths)
        # Nothing is reported before the first episode ends.
        first_end = np.argmax(ended)
        assert not np.asarray(out["returned_episode_returns"][lane][:first_end]).any()
        assert not np.asarray(out["returned_episode_lengths"][lane][:first_end]).any()


@pytest.mark.parametrize(
    "wrapper",
    [lambda env: FlickerObservation(env, 0.3), lambda env: GaussianNoiseObservation(env, 0.5)],
)
def test_random_observation_wrappers_keep_the_gymnax_api(wrapper: Callable) -> None:
    env, params = make("CartPole-v1")
    wrapped = wrapper(env)
    assert wrapped.default_params == params
    assert wrapped.action_space(params).n == 2
    assert wrapped.observation_space(params).shape == (4,)
    noisy = rollout(wrapped, params, uniform_policy(2), jax.random.key(9), 200, 8)
    obs = np.asarray(noisy["obs"]).reshape(-1, 4)
    if isinstance(wrapped, FlickerObservation):
        blank = (obs == 0).all(axis=1).mean()
        # 1600 Bernoulli(0.3) draws: standard error 0.0115, so 5 of them is 0.057.
        assert abs(blank - 0.3) < 0.06
    else:
        assert np.all(np.asarray(wrapped.observation_space(params).high) > 1e30)


def test_noise_has_the_stated_law_and_matches_the_final_observation() -> None:
    env, params = make("CartPole-v1")
    wrapped = GaussianNoiseObservation(env, 0.5)
    keys = jax.random.split(jax.random.key(10), 2000)
    obs, state = jax.jit(jax.vmap(wrapped.reset, in_axes=(0, None)))(keys, params)
    noise = np.asarray(obs - jax.vmap(env.get_obs)(state))
    # 8000 N(0, 0.25) draws: 5 standard errors of the mean are 0.028, of the std 0.020.
    assert abs(noise.mean()) < 0.028 and abs(noise.std() - 0.5) < 0.02
    # While an episode goes on, the observation and info["final_observation"] are one and the same.
    out = rollout(wrapped, params, uniform_policy(2), jax.random.key(11), 50, 2)
    going_on = ~np.asarray(out["terminated"] | out["truncated"])[..., None]
    next_obs = np.asarray(out["obs"])[:, 1:]
    final = np.asarray(out["final_observation"])[:, :-1]
    assert np.all(np.where(going_on[:, :-1], next_obs == final, True))


def test_make_rejects_unknown_ids_and_keywords_with_the_fix() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown \(did you mean CartPole-P-v1\?\); valid ids: .*CartPole-P.*RepeatPrev",
    ):
        make("CartPole-P-v2")
    with pytest.raises(ValueError, match="constructor argument"):
        make("RepeatFirstEasy", no_such_option=1)
    env, params = make("RepeatPreviousEasy", k=8, max_steps_in_episode=20)
    assert env.k == 8 and params.max_steps_in_episode == 20


def test_gymnax_ids_build_the_gymnax_env() -> None:
    # Stepping every gymnax env is gymnax's own test; here they must be the same classes.
    # MNISTBandit downloads MNIST on construction, which a test must not do.
    for env_id in gymnax.registered_envs:
        if env_id != "MNISTBandit-bsuite":
            assert type(make(env_id)[0]) is type(gymnax.make(env_id)[0])
    assert set(gymnax.registered_envs) - set(registered_envs()) == {"MNISTBandit-bsuite"}
    assert {"CartPole-P-v1", "MemoryChain-bsuite", "CountRecallHard"} <= set(registered_envs())


def test_envs_that_download_data_are_refused_by_name_before_any_network_access(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("make() reached for the network")

    for module, name in [
        (urllib.request, "urlopen"),
        (urllib.request, "urlretrieve"),
        (load_mnist, "urlretrieve"),  # gymnax binds its own name for it at import
        (load_mnist, "load_mnist"),
    ]:
        monkeypatch.setattr(module, name, no_network)
    message = "MNISTBandit-bsuite' is not supported: gymnax downloads MNIST when it is made"
    with pytest.raises(ValueError, match=message):
        make("MNISTBandit-bsuite")
    with pytest.raises(ValueError, match=message):
        check_env_id("MNISTBandit-bsuite")
    assert "MNISTBandit-bsuite" not in registered_envs()


# MinAtar's frames (Young & Tian 2019): 10x10, one boolean channel per kind of object.
MINATAR_CHANNELS = {
    "Asterix-MinAtar": 4,
    "Breakout-MinAtar": 4,
    "Freeway-MinAtar": 7,
    "Seaquest-MinAtar": 10,
    "SpaceInvaders-MinAtar": 6,
}


def test_every_minatar_id_is_known() -> None:
    assert {i for i in gymnax.registered_envs if i.endswith("-MinAtar")} == set(MINATAR_CHANNELS)


@pytest.mark.parametrize("env_id", MINATAR_CHANNELS)
def test_minatar_observations_go_through_the_image_extractor(env_id: str) -> None:
    env, params = make(env_id)
    shape = env.observation_space(params).shape
    assert shape == (10, 10, MINATAR_CHANNELS[env_id])
    keys = jax.random.split(jax.random.key(0), 2)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (2, *shape)
    assert set(np.unique(np.asarray(obs, np.float32))) <= {0.0, 1.0}
    extractor = FeatureExtractor(observation_extractor=observation_extractor(shape, 16))
    obs = jnp.stack([obs, 1 - obs], axis=1)  # [B, T, H, W, C]: the frame, then its negative
    variables = extractor.init(jax.random.key(1), obs)
    out = extractor.apply(variables, obs)
    assert out.shape == (2, 2, 16)
    # Each step's features are its own frame's: the same as embedding that step alone.
    alone = extractor.apply(variables, obs[:, 1:])
    np.testing.assert_allclose(out[:, 1:], alone, atol=1e-6)
    assert float(jnp.max(jnp.abs(out[:, 0] - out[:, 1]))) > 0.0


@pytest.mark.parametrize("env_id", [*PARTIALLY_OBSERVED, *MEMORY_TASKS])
def test_our_ids_reset_and_step_under_jit_and_vmap(env_id: str) -> None:
    env, params = make(env_id)
    env = EpisodeStatistics(env)
    keys = jax.random.split(jax.random.key(11), 3)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (3, *env.observation_space(params).shape)
    action = jax.vmap(env.action_space(params).sample)(keys)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs, state, reward, terminated, truncated, info = step(keys, state, action, params)
    assert obs.shape[0] == reward.shape[0] == terminated.shape[0] == truncated.shape[0] == 3
    assert obs.dtype == jnp.float32
    assert info["returned_episode"].shape == (3,)
