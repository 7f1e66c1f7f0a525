"""Feature extractors, heads and Network composition, checked against independent references."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from memorax.networks import (
    CNN,
    MLP,
    RNN,
    FeatureExtractor,
    Network,
    SharedActorCritic,
    heads,
    observation_extractor,
    shares_torso,
)


def test_docs_constructors_build_and_apply():
    """The snippets of memorax-docs/building-networks.md, in linen form."""
    cnn = CNN(features=(32, 64, 64), kernel_sizes=(8, 4, 3), strides=(4, 2, 1))
    image = jnp.ones((2, 3, 84, 84, 1))  # [B, T, H, W, C]
    params = cnn.init(jax.random.key(0), image)
    # 84 -> 20 -> 9 -> 7 spatial, 64 channels.
    assert cnn.apply(params, image).shape == (2, 3, 7 * 7 * 64)
    with pytest.raises(ValueError, match="one kernel size and stride per layer"):
        CNN(features=(8,), kernel_sizes=(3, 3), strides=(1,)).init(jax.random.key(0), image)


def test_mlp_matches_hand_written_layers():
    mlp = MLP(features=(5, 3))
    x = jax.random.normal(jax.random.key(0), (4, 2, 6))
    params = mlp.init(jax.random.key(1), x)["params"]
    h = jax.nn.relu(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    expected = jax.nn.relu(h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    np.testing.assert_allclose(mlp.apply({"params": params}, x), expected, atol=1e-6)


def test_feature_extractor_one_hots_discrete_actions_and_concatenates():
    extractor = FeatureExtractor(
        observation_extractor=MLP(features=(4,)),
        action_extractor=MLP(features=(3,)),
        reward_extractor=MLP(features=(2,)),
        done_extractor=MLP(features=(2,)),
        num_actions=5,
    )
    obs = jnp.ones((2, 3, 7))
    action = jnp.array([[0, 4, 2], [1, 1, 3]])
    reward = jnp.ones((2, 3))
    done = jnp.zeros((2, 3), bool)
    params = extractor.init(jax.random.key(0), obs, action, reward, done)
    out = extractor.apply(params, obs, action, reward, done)
    assert out.shape == (2, 3, 4 + 3 + 2 + 2)
    p = params["params"]
    one_hot = jax.nn.one_hot(action, 5)
    dense = p["action_extractor"]["Dense_0"]
    kernel, bias = dense["kernel"], dense["bias"]
    np.testing.assert_allclose(out[..., 4:7], jax.nn.relu(one_hot @ kernel + bias), atol=1e-6)


def test_feature_extractor_errors_name_the_fix():
    extractor = FeatureExtractor(MLP(features=(4,)), action_extractor=MLP(features=(3,)))
    obs = jnp.ones((1, 2, 3))
    with pytest.raises(ValueError, match="num_actions"):
        extractor.init(jax.random.key(0), obs, jnp.zeros((1, 2), int))
    with pytest.raises(ValueError, match="without prev_action"):
        extractor.init(jax.random.key(0), obs)


def test_observation_extractor_is_the_scripts_mlp_for_vectors_and_refuses_other_ranks():
    # Vectors keep exactly the extractor the scripts had, so their learning results stay the same.
    assert observation_extractor((7,), 64) == MLP(features=(64,))
    for shape in [(10, 10), (), (2, 10, 10, 4)]:
        with pytest.raises(ValueError, match=rf"shape {re.escape(str(shape))}: supported are"):
            observation_extractor(shape, 64)


def _minatar_network(params, image):
    """MinAtar's network by hand: 3x3 stride-1 'VALID' conv of 16, relu, flatten, dense, relu."""
    conv, dense = params["layers_0"]["Conv_0"], params["layers_1"]["Dense_0"]
    x = jax.lax.conv_general_dilated(
        image, conv["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    x = jax.nn.relu(x + conv["bias"]).reshape(image.shape[0], -1)
    return jax.nn.relu(x @ dense["kernel"] + dense["bias"])


def test_image_observations_get_minatars_network_and_keep_batch_and_time_dims():
    extractor = FeatureExtractor(observation_extractor=observation_extractor((10, 10, 4), 32))
    # MinAtar's observations are boolean 10x10 frames, one channel per kind of object.
    obs = jax.random.bernoulli(jax.random.key(0), 0.2, (2, 3, 10, 10, 4))  # [B, T, H, W, C]
    params = extractor.init(jax.random.key(1), obs)
    out = extractor.apply(params, obs)
    assert out.shape == (2, 3, 32)
    p = params["params"]["observation_extractor"]
    assert p["layers_0"]["Conv_0"]["kernel"].shape == (3, 3, 4, 16)
    assert p["layers_1"]["Dense_0"]["kernel"].shape == (8 * 8 * 16, 32)
    expected = _minatar_network(p, obs.reshape(6, 10, 10, 4).astype(jnp.float32))
    np.testing.assert_allclose(out.reshape(6, 32), expected, atol=1e-5)


def _squashed(low, high, action_dim=1):
    head = heads.SquashedGaussian(action_dim=action_dim, action_low=low, action_high=high)
    x = jax.random.normal(jax.random.key(0), (6, 5))
    params = head.init(jax.random.key(1), x)
    # Widen the policy so its samples cover the bounds, not just their centre.
    params = jax.tree.map(lambda p: p * 40.0, params)
    return head.apply(params, x)


def test_squashed_gaussian_log_prob_matches_numerical_density():
    """Density from the Gaussian CDF of the inverted action (independent of distrax's bijectors):
    p(a) = [Phi(u(a + h)) - Phi(u(a - h))] / 2h, with u the inverse of the squash."""
    low, high = -2.0, 3.0
    dist = _squashed(low, high)
    mean = dist.distribution.loc[:, 0]
    std = dist.distribution.scale_diag[:, 0]
    centre, half_width = (high + low) / 2, (high - low) / 2
    actions = jnp.linspace(low + 0.05, high - 0.05, 41)
    h = 1e-3

    def cdf(a):
        u = np.arctanh((np.asarray(a, np.float64) - centre) / half_width)
        return norm.cdf((u[None, :] - np.asarray(mean)[:, None]) / np.asarray(std)[:, None])

    numerical = (cdf(actions + h) - cdf(actions - h)) / (2 * h)  # [6, 41]
    log_prob = jax.vmap(lambda a: dist.log_prob(jnp.full((6, 1), a)))(actions).T  # [6, 41]
    mask = numerical > 1e-4  # compare where the density is resolvable in float32
    assert mask.sum() > 50
    np.testing.assert_allclose(np.exp(log_prob)[mask], numerical[mask], rtol=2e-3)


def test_squashed_gaussian_samples_within_bounds_and_mode_is_squashed_mean():
    low, high = (-2.0, 0.0), (2.0, 0.5)
    dist = _squashed(low, high, action_dim=2)
    actions, log_prob = dist.sample_and_log_prob(seed=jax.random.key(3), sample_shape=(500,))
    assert bool(jnp.all(actions >= jnp.array(low))) and bool(jnp.all(actions <= jnp.array(high)))
    assert bool(jnp.all(jnp.isfinite(log_prob)))
    np.testing.assert_allclose(log_prob, dist.log_prob(actions), rtol=1e-3, atol=1e-3)
    centre, half = (jnp.array(high) + jnp.array(low)) / 2, (jnp.array(high) - jnp.array(low)) / 2
    expected_mode = centre + half * jnp.tanh(dist.distribution.loc)
    np.testing.assert_allclose(dist.mode(), expected_mode, atol=1e-6)


def test_gaussian_and_categorical_heads():
    x = jax.random.normal(jax.random.key(0), (3, 4))
    gaussian = heads.Gaussian(action_dim=2)
    params = gaussian.init(jax.random.key(1), x)
    dist = gaussian.apply(params, x)
    std = dist.scale_diag
    assert float(jnp.min(std)) >= np.exp(heads.LOG_STD_MIN) - 1e-6
    assert float(jnp.max(std)) <= np.exp(heads.LOG_STD_MAX) + 1e-6
    # State-dependent: different inputs give different standard deviations.
    assert float(jnp.max(jnp.abs(std[0] - std[1]))) > 0.0
    categorical = heads.Categorical(action_dim=4)
    logits = categorical.apply(categorical.init(jax.random.key(2), x), x).logits
    assert logits.shape == (3, 4)


def test_q_heads():
    x = jax.random.normal(jax.random.key(0), (3, 4))
    q = heads.DiscreteQNetwork(action_dim=5)
    assert q.apply(q.init(jax.random.key(1), x), x).shape == (3, 5)
    continuous = heads.ContinuousQNetwork()
    action = jnp.ones((3, 2))
    params = continuous.init(jax.random.key(1), x, action)
    values = continuous.apply(params, x, action)
    assert values.shape == (3,)
    # The action is an input: changing it changes Q.
    assert float(jnp.max(jnp.abs(values - continuous.apply(params, x, -action)))) > 0.0


def _actor_critic_inputs():
    obs = jax.random.normal(jax.random.key(0), (2, 5, 3))
    reset = jnp.zeros((2, 5), bool).at[:, 0].set(True)
    return obs, reset


def test_separate_actor_and_critic_have_independent_parameters():
    feature_extractor = FeatureExtractor(observation_extractor=MLP(features=(8,)))
    actor = Network(feature_extractor, RNN(nn.GRUCell(features=8)), heads.Categorical(3))
    critic = Network(
        FeatureExtractor(observation_extractor=MLP(features=(8,))),
        RNN(nn.GRUCell(features=8)),
        heads.VNetwork(),
    )
    assert not shares_torso(actor, critic)
    obs, reset = _actor_critic_inputs()
    actor_params = actor.init(jax.random.key(0), obs, reset, actor.initialize_carry(2))
    critic_params = critic.init(jax.random.key(1), obs, reset, critic.initialize_carry(2))

    def value_loss(actor_params, critic_params):
        return jnp.sum(critic.apply(critic_params, obs, reset, critic.initialize_carry(2))[1])

    # The critic's loss reaches its own parameters and none of the actor's.
    actor_grads, critic_grads = jax.grad(value_loss, argnums=(0, 1))(actor_params, critic_params)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(actor_grads))
    assert float(jnp.max(jnp.abs(critic_grads["params"]["torso"]["cell"]["hn"]["kernel"]))) > 0.0


def test_shared_actor_critic_uses_one_torso_for_both_heads():
    """The docs' sharing pattern: one feature extractor and torso object in both Networks."""
    shared_extractor = FeatureExtractor(observation_extractor=MLP(features=(8,)))
    shared_torso = RNN(nn.GRUCell(features=8))
    actor = Network(shared_extractor, shared_torso, heads.Categorical(action_dim=3))
    critic = Network(shared_extractor, shared_torso, heads.VNetwork())
    assert shares_torso(actor, critic)
    model = SharedActorCritic(shared_extractor, shared_torso, actor.head, critic.head)
    obs, reset = _actor_critic_inputs()
    carry = model.initialize_carry(2)
    params = model.init(jax.random.key(0), obs, reset, carry)
    assert set(params["params"]) == {"feature_extractor", "torso", "actor_head", "critic_head"}

    def value_loss(params):
        return jnp.sum(model.apply(params, obs, reset, carry)[1][1])

    # A critic update moves the shared torso, and with it the policy.
    grads = jax.grad(value_loss)(params)
    assert float(jnp.max(jnp.abs(grads["params"]["torso"]["cell"]["hn"]["kernel"]))) > 0.0
    moved = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    logits = model.apply(params, obs, reset, carry)[1][0].logits
    moved_logits = model.apply(moved, obs, reset, carry)[1][0].logits
    assert float(jnp.max(jnp.abs(logits - moved_logits))) > 0.0

    # Same weights as a standalone actor Network gives the same policy: one set of parameters.
    actor_params = {"params": {k: params["params"][k] for k in ("feature_extractor", "torso")}}
    actor_params["params"]["head"] = params["params"]["actor_head"]
    standalone = actor.apply(actor_params, obs, reset, carry)[1].logits
    np.testing.assert_allclose(standalone, logits, atol=1e-6)
