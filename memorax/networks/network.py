"""Network = FeatureExtractor -> torso -> head, threading the torso's carry."""

from typing import Any

import flax.linen as nn
import jax

from memorax.networks.feature_extractor import FeatureExtractor
from memorax.networks.sequence_models.base import (
    Carry,
    apply_sequence_model,
    initialize_carry_of,
)


class Network(nn.Module):
    """Feature extractor -> torso -> head over sequences, threading the torso's carry.

    Called as (observation [B, T, ...], reset [B, T], carry) -> (carry, y), y the head's output.


    The torso is any module that obeys the sequence-model contract, or a stateless one (used
    step-wise with an empty carry). ``prev_action``/``prev_reward`` feed the feature extractor's
    optional extractors, ``reset`` its done extractor; ``action`` goes to heads that take one
    (``ContinuousQNetwork``).
    """

    feature_extractor: FeatureExtractor
    torso: nn.Module
    head: nn.Module

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return initialize_carry_of(self.torso, batch_size)

    def __call__(
        self,
        observation: jax.Array,
        reset: jax.Array,
        carry: Carry,
        prev_action: jax.Array | None = None,
        prev_reward: jax.Array | None = None,
        action: jax.Array | None = None,
    ) -> tuple[Carry, Any]:
        features = self.feature_extractor(observation, prev_action, prev_reward, reset)
        carry, features = apply_sequence_model(self.torso, features, reset, carry)
        if action is None:
            return carry, self.head(features)
        return carry, self.head(features, action)


class SharedActorCritic(nn.Module):
    """Actor and critic on one feature extractor and torso: one set of parameters, one carry.

    ``__call__`` returns ``(carry, (policy, value))``. Use two ``Network``s instead for separate
    actor and critic parameters.
    """

    feature_extractor: FeatureExtractor
    torso: nn.Module
    actor_head: nn.Module
    critic_head: nn.Module

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return initialize_carry_of(self.torso, batch_size)

    def __call__(
        self,
        observation: jax.Array,
        reset: jax.Array,
        carry: Carry,
        prev_action: jax.Array | None = None,
        prev_reward: jax.Array | None = None,
    ) -> tuple[Carry, tuple[Any, jax.Array]]:
        features = self.feature_extractor(observation, prev_action, prev_reward, reset)
        carry, features = apply_sequence_model(self.torso, features, reset, carry)
        return carry, (self.actor_head(features), self.critic_head(features))


def shares_torso(actor: Network, critic: Network) -> bool:
    """True when two Networks were built on the same feature extractor and torso objects, as in
    the memorax docs' parameter-sharing example; such a pair runs as one SharedActorCritic."""
    return actor.feature_extractor is critic.feature_extractor and actor.torso is critic.torso
