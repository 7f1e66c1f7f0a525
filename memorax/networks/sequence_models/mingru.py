"""MinGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate read only
the input, so the recurrence is linear in h and runs over time as a parallel scan.

    z_t = sigmoid(W_z x_t + b_z),   h~_t = g(W_h x_t + b_h),   h_t = (1 - z_t) h_{t-1} + z_t h~_t

with g(v) = v + 1/2 for v >= 0 and sigmoid(v) for v < 0: the paper's log-space variant. g is
positive, so every h~_t and h_t is, and the scan runs on logarithms (the paper's log-space form):
log(1 - z_t) = -softplus(k_t), log z_t = -softplus(-k_t) for k_t = W_z x_t + b_z, and

    log g(v) = log(v + 1/2) for v >= 0,   -softplus(-v) for v < 0.

The paper sums these logarithms with a cumulative (log-sum-exp) scan from h_0. Here the scan is
``jax.lax.associative_scan`` over the pairs (log a_t, log b_t) = (log(1 - z_t), log z_t + log h~_t),
combined as (la1, lb1) then (la2, lb2) -> (la1 + la2, logaddexp(la2 + lb1, lb2)), and a reset
flag drops everything before it, as in ``Memoroid``. The incoming carry h_0 is not logged (it
may be 0, whose logarithm has no gradient); it enters linearly: h_t = A_t * h_0 + exp(LB_t), with
A_t = exp(sum of log a since step 0), or 0 once a reset has occurred in the call. No logarithm is
ever -inf, so values and gradients stay finite at any length (tested at T = 2048).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from memorax.networks.blocks.blocks import PreNorm, Residual, Stack
from memorax.networks.sequence_models.base import Carry, SequenceModel
from memorax.networks.sequence_models.memoroid import MemoroidTorso


def log_g(v: jax.Array) -> jax.Array:
    """log g(v), g(v) = v + 1/2 for v >= 0 and sigmoid(v) below: finite for every v."""
    return jnp.where(v >= 0.0, jnp.log(jax.nn.relu(v) + 0.5), -jax.nn.softplus(-v))


class MinGRULayer(SequenceModel):
    """One minGRU layer: x: [B, T, F] -> h: [B, T, features]; the carry is h: [B, features]."""

    features: int

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.features))

    @nn.compact
    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        gate = nn.Dense(self.features, name="gate")(x)  # k_t = W_z x_t + b_z: [B, T, H]
        candidate = nn.Dense(self.features, name="candidate")(x)  # W_h x_t + b_h: [B, T, H]
        log_a = -jax.nn.softplus(gate)  # log(1 - z_t)
        log_b = -jax.nn.softplus(-gate) + log_g(candidate)  # log(z_t * h~_t)

        def operator(earlier, later):
            (la_earlier, lb_earlier, flag_earlier), (la_later, lb_later, flag_later) = (
                earlier,
                later,
            )
            la = la_earlier + la_later
            lb = jnp.logaddexp(la_later + lb_earlier, lb_later)
            drop = flag_later[..., None]  # a reset in `later` hides `earlier`
            return (
                jnp.where(drop, la_later, la),
                jnp.where(drop, lb_later, lb),
                flag_earlier | flag_later,
            )

        total_log_a, total_log_b, restarted = jax.lax.associative_scan(
            operator, (log_a, log_b, reset), axis=1
        )
        carry_weight = jnp.where(restarted[..., None], 0.0, jnp.exp(total_log_a))  # [B, T, H]
        h = carry_weight * carry[:, None] + jnp.exp(total_log_b)  # [B, T, H]
        return h[:, -1], h


class MinGRU(MemoroidTorso):
    """Pre-norm residual minGRU layers of width ``hidden_dim`` (the input projected to it first
    when its width differs), stacked like the other parallel torsos."""

    @nn.nowrap
    def make_stack(self) -> Stack:
        layers = [MinGRULayer(features=self.hidden_dim) for _ in range(self.num_layers)]
        return Stack(blocks=[Residual(PreNorm(layer)) for layer in layers])
