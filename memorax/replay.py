"""Replayed sequences in the off-policy scripts (dqn_mamba, sac_s5): their targets, and the checks
that a config's replay schedule and buffer can run.

A replayed sequence [B, L] may cross episode boundaries. Where an episode ends by truncation, its
bootstrap value needs the final observation seen with the episode's own carry;
``insert_final_observation`` splices it into the sequence so one replay serves both the
continuing episodes and that bootstrap, and ``n_step_targets`` forms the targets from it.
The sequence is any struct with ``inputs`` (a ``StepInput``), ``action, reward, terminated,
truncated, final_observation`` leaves of shape [B, L, ...].
"""

from typing import Any

import jax.numpy as jnp

from memorax.rollout import StepInput


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


def insert_final_observation(sequence: Any, first_trained: int):
    """Replay inputs [B, L + 1] with one truncated episode's final observation inserted.

    The final observation of each sequence's first truncation at a step j >= first_trained - 1
    (so the insert falls among the trained steps, never in the burn-in) goes in at j + 1, with no
    reset and the truncating step's action and reward as previous inputs, before the next
    episode's first step; a sequence without one gets an unused step appended. Returns
    (inputs, a ``StepInput`` [B, L + 1]; position [B, L] of each original step in the longer
    sequence; replayed [B, L]: True at the truncation whose value is inserted).
    """
    length = sequence.reward.shape[1]
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

    inputs = StepInput(
        observation=build(sequence.inputs.observation, sequence.final_observation),
        reset=build(sequence.inputs.reset, jnp.zeros_like(sequence.inputs.reset)),
        prev_action=build(sequence.inputs.prev_action, sequence.action),
        prev_reward=build(sequence.inputs.prev_reward, sequence.reward),
    )
    position = steps + (steps > truncation)
    return inputs, position, replayed


def check_replay_schedule(
    *,
    num_envs: int,
    total_timesteps: int,
    learning_starts: int,
    eval_every: int,
    buffer_size: int,
    steps_per_round: int,
    round_flags: str,
    replay_length: int,
    replay_flags: str,
) -> None:
    """An off-policy script's step counts, checked before anything compiles: a ValueError that
    names the flag and the fix for a schedule that cannot run.

    A round is ``steps_per_round`` env steps (all envs) followed by gradient updates; warmup
    (``--learning-starts``) and each evaluation period are whole rounds; each env's share of the
    buffer holds a replayed sequence of ``replay_length`` steps, and warmup fills one per env.
    ``round_flags`` and ``replay_flags`` say which flags set those sizes.
    """
    if buffer_size % num_envs:
        raise ValueError(
            f"--buffer-size ({buffer_size}) must be a multiple of --num-envs ({num_envs}): each "
            f"env gets an equal share"
        )
    for flag, value in (("learning-starts", learning_starts), ("eval-every", eval_every)):
        if value % steps_per_round:
            raise ValueError(
                f"--{flag} ({value}) must be a multiple of {round_flags} = {steps_per_round} "
                f"env steps"
            )
    if total_timesteps <= learning_starts:
        raise ValueError(
            f"--total-timesteps ({total_timesteps}) must exceed --learning-starts "
            f"({learning_starts})"
        )
    training_steps = total_timesteps - learning_starts
    if training_steps % eval_every:
        raise ValueError(
            f"--eval-every ({eval_every}) must divide the {training_steps} training steps "
            f"(--total-timesteps - --learning-starts)"
        )
    if replay_length > buffer_size // num_envs:
        raise ValueError(
            f"a replayed sequence ({replay_flags} = {replay_length}) must fit in one env's share "
            f"of --buffer-size ({buffer_size // num_envs}); raise --buffer-size"
        )
    if learning_starts < replay_length * num_envs:
        raise ValueError(
            f"--learning-starts ({learning_starts}) must hold one replayed sequence per env (at "
            f"least {replay_length * num_envs} env steps)"
        )


def check_replay_buffer(buffer: Any, replay_length: int, num_envs: int, replay_flags: str) -> None:
    """A ValueError unless ``buffer`` samples the sequences the config replays (``replay_length``
    steps, ``replay_flags`` naming the flags that set it) from one row per env."""
    if (buffer.sample_sequence_length, buffer.add_batch_size) != (replay_length, num_envs):
        raise ValueError(
            f"the buffer samples sequences of {buffer.sample_sequence_length} steps from "
            f"{buffer.add_batch_size} env rows; this config replays {replay_flags} = "
            f"{replay_length} steps of --num-envs {num_envs} envs"
        )
