"""FeatureExtractor: embeds the observation and, optionally, previous action, reward and done;
``observation_extractor`` picks the observation's embedding from its shape."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.mlp import CNN, MLP


def observation_extractor(observation_shape: tuple[int, ...], hidden_size: int) -> nn.Module:
    """The observation's embedding, [..., *observation_shape] -> [..., hidden_size].

    Vectors (``env.observation_space(env_params).shape`` of rank 1) get one dense layer; images
    ([H, W, C]) get a convolution, then that dense layer.
    """
    if len(observation_shape) == 1:
        return MLP(features=(hidden_size,))
    if len(observation_shape) == 3:
        # MinAtar's network (Young & Tian 2019): its 10x10 frames are too small for Atari's
        # strided 8x8 kernels, so one 3x3 stride-1 convolution of 16 channels keeps every cell.
        cnn = CNN(features=(16,), kernel_sizes=(3,), strides=(1,))
        return nn.Sequential([cnn, MLP(features=(hidden_size,))])
    raise ValueError(
        f"no observation extractor for observations of shape {tuple(observation_shape)}: "
        "supported are vectors [F] (an MLP) and images [H, W, C] (a CNN)"
    )


class FeatureExtractor(nn.Module):
    """Embeds each input with its own extractor and concatenates the embeddings on the last axis.

    Inputs carry the same leading dims ([B, T] in a torso). The previous action is one-hot encoded
    when it is an integer (discrete) action, which needs ``num_actions``; the previous reward and
    done flag are scalars per step.
    """

    observation_extractor: nn.Module
    action_extractor: nn.Module | None = None
    reward_extractor: nn.Module | None = None
    done_extractor: nn.Module | None = None
    num_actions: int | None = None

    @nn.compact
    def __call__(
        self,
        observation: jax.Array,
        prev_action: jax.Array | None = None,
        prev_reward: jax.Array | None = None,
        done: jax.Array | None = None,
    ) -> jax.Array:
        embeddings = [self.observation_extractor(observation.astype(jnp.float32))]
        if self.action_extractor is not None:
            embeddings.append(self.action_extractor(self._encode_action(prev_action)))
        if self.reward_extractor is not None:
            reward = _required(prev_reward, "prev_reward", "reward_extractor")
            embeddings.append(self.reward_extractor(reward.astype(jnp.float32)[..., None]))
        if self.done_extractor is not None:
            done = _required(done, "done", "done_extractor")
            embeddings.append(self.done_extractor(done.astype(jnp.float32)[..., None]))
        return jnp.concatenate(embeddings, axis=-1)

    def _encode_action(self, action: jax.Array | None) -> jax.Array:
        action = _required(action, "prev_action", "action_extractor")
        if jnp.issubdtype(action.dtype, jnp.integer):
            if self.num_actions is None:
                raise ValueError(
                    "FeatureExtractor got integer (discrete) previous actions but no num_actions "
                    "to one-hot them: pass FeatureExtractor(..., num_actions=<action count>)"
                )
            return jax.nn.one_hot(action, self.num_actions)
        return action.astype(jnp.float32)


def _required(value: jax.Array | None, name: str, extractor: str) -> jax.Array:
    if value is None:
        raise ValueError(f"FeatureExtractor has a {extractor} but was called without {name}")
    return value
