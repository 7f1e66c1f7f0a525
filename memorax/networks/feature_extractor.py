"""FeatureExtractor: embeds the observation and, optionally, previous action, reward and done."""

import flax.linen as nn
import jax
import jax.numpy as jnp


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
