"""Targets over replayed sequences shared by the off-policy scripts (dqn_mamba, sac_s5).

A replayed sequence [B, L] may cross episode boundaries. Where an episode ends by truncation, its
bootstrap value needs the final observation seen with the episode's own carry;
``insert_final_observation`` splices it into the sequence so one replay serves both the
continuing episodes and that bootstrap, and ``n_step_targets`` forms the targets from it.
The sequence is any struct with ``observation, prev_action, prev_reward, action, reward,
terminated, truncated, final_observation`` leaves of shape [B, L, ...].
"""

from typing import Any

import jax
import jax.numpy as jnp


def n_step_targets(
    reward, terminated, truncated, next_value, truncation_value, replayed_truncation, gamma, n
):
    """n-step targets for the first L - n steps of sequences [B, L] (time on the last axis).

    ``next_value[:, j]``: the bootstrap value of step j reached by continuing its episode;
    ``truncation_value[:, j]``: that of the final observation of a truncation at step j - 1, seen
    with the episode's carry, known where ``replayed_truncation[:, j - 1]`` is True. The sum of
    rewards stops where an episode ends; a termination adds nothing, a truncation its final
    observation's value; a target that needs an unknown truncation value is invalid.
    Returns (targets [B, L - n], valid [B, L - n]).
    """
    length = reward.shape[-1] - n
    total = jnp.zeros(reward.shape[:-1] + (length,))
    discount = jnp.ones_like(total)
    alive = jnp.ones_like(total, bool)
    valid = jnp.ones_like(total, bool)
    for k in range(n):
        window = slice(k, k + length)
        total = total + jnp.where(alive, discount * reward[:, window], 0.0)
        discount = discount * gamma
        truncating = alive & truncated[:, window] & ~terminated[:, window]
        bootstrap = truncation_value[:, k + 1 : k + 1 + length]
        total = total + jnp.where(truncating, discount * bootstrap, 0.0)
        valid = valid & ~(truncating & ~replayed_truncation[:, window])
        alive = alive & ~(terminated[:, window] | truncated[:, window])
    total = total + jnp.where(alive, discount * next_value[:, n:], 0.0)
    return total, valid


def insert_final_observation(sequence: Any, reset: jax.Array, first_trained: int):
    """Replay inputs [B, L + 1] with one truncated episode's final observation inserted.

    The final observation of each sequence's first truncation at a step j >= first_trained - 1
    (so the insert falls among the trained steps, never in the burn-in) goes in at j + 1, with no
    reset and the truncating step's action and reward as previous inputs, before the next
    episode's first step; a sequence without one gets an unused step appended. Returns
    (inputs (observation, reset, prev_action, prev_reward), position [B, L] of each original step
    in the longer sequence, replayed [B, L]: True at the truncation whose value is inserted).
    """
    length = reset.shape[1]
    steps = jnp.arange(length)
    ends_by_truncation = sequence.truncated & ~sequence.terminated
    eligible = ends_by_truncation & (steps >= first_trained - 1) & (steps < length - 1)
    truncation = jnp.where(eligible.any(1), jnp.argmax(eligible, axis=1), length - 1)[:, None]
    replayed = eligible & (steps == truncation)
    longer = jnp.arange(length + 1)
    inserted = longer == truncation + 1  # [B, L + 1]
    source = jnp.minimum(longer - (longer > truncation + 1), length - 1)

    def build(x, at_insert):
        picked = jnp.take_along_axis(x, source.reshape(source.shape + (1,) * (x.ndim - 2)), 1)
        at_insert = jnp.take_along_axis(
            at_insert, truncation.reshape(truncation.shape + (1,) * (x.ndim - 2)), 1
        )
        return jnp.where(inserted.reshape(inserted.shape + (1,) * (x.ndim - 2)), at_insert, picked)

    inputs = (
        build(sequence.observation, sequence.final_observation),
        build(reset, jnp.zeros_like(reset)),
        build(sequence.prev_action, sequence.action),
        build(sequence.prev_reward, sequence.reward),
    )
    position = steps + (steps > truncation)
    return inputs, position, replayed
