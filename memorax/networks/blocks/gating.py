"""GatedResidual: the GRU-type gating layer of GTrXL (Parisotto et al. 2020, "Stabilizing
Transformers for Reinforcement Learning": their g^GRU), in place of a residual add.

With x the stream into the block and y = ReLU(module(x)) the sub-block's output (their identity
map reordering puts a ReLU on it before it meets the stream):

    r = sigmoid(W_r y + U_r x)
    z = sigmoid(W_z y + U_z x - b_g)
    h = tanh(W_g y + U_g (r * x))
    g(x, y) = (1 - z) * x + z * h

b_g is a learned vector started at ``gate_bias`` > 0, so z starts small and the block starts near
the identity, which is what made GTrXL train; the paper asks b_g > 0, and 2 (our default) is the
value common implementations use. The paper's gates have no other biases; neither do ours.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.sequence_models.base import (
    Carry,
    SequenceModel,
    apply_sequence_model,
    initialize_carry_of,
)


class GatedResidual(SequenceModel):
    """g(x, ReLU(module(x))) for a ``module`` that keeps the feature size; its carry passes
    through. Parameters: ``W`` ([F, 3F]: W_r, W_z, W_g), ``U_rz`` ([F, 2F]: U_r, U_z), ``U_g``
    ([F, F]) and ``gate_bias`` (b_g, [F])."""

    module: nn.Module
    gate_bias: float = 2.0

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return initialize_carry_of(self.module, batch_size)

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        carry, y = apply_sequence_model(self.module, x, reset, carry)
        if y.shape != x.shape:
            raise ValueError(
                f"GatedResidual needs a module that keeps the shape of its input: got {x.shape} "
                f"in and {y.shape} out; make the module's output size {x.shape[-1]}"
            )
        features = x.shape[-1]
        y = nn.relu(y)
        from_y = nn.Dense(3 * features, use_bias=False, name="W")(y)
        from_x = nn.Dense(2 * features, use_bias=False, name="U_rz")(x)
        bias = self.param("gate_bias", nn.initializers.constant(self.gate_bias), (features,))
        reset_gate = nn.sigmoid(from_y[..., :features] + from_x[..., :features])
        update_gate = nn.sigmoid(
            from_y[..., features : 2 * features] + from_x[..., features:] - bias
        )
        candidate = jnp.tanh(
            from_y[..., 2 * features :]
            + nn.Dense(features, use_bias=False, name="U_g")(reset_gate * x)
        )
        return carry, (1.0 - update_gate) * x + update_gate * candidate
