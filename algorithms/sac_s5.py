"""Recurrent soft actor-critic with S5 memory: the whole run, every seed, in one jitted call.

    python algorithms/sac_s5.py                                   # S5 on position-only Pendulum
    python algorithms/sac_s5.py --torso mlp                       # its memoryless twin
    python algorithms/sac_s5.py --env-id Pendulum-v1 --torso mlp --total-timesteps 30000
    python algorithms/sac_s5.py --critic-torso gru                # a different critic memory
    python algorithms/sac_s5.py --load runs/<run>                 # evaluate a saved run again

Both the actor and the twin critics have memory, each its own torso: a critic that starts every
replayed sequence from a zero state cannot value a partially observed state. Every stored step
keeps the carry that the actor, both critics and both target critics had before it, so a replayed
sequence may start anywhere and every network starts it from its own stored carry; the first
--burn-in steps only refresh those carries (no gradient, no loss); the reset flags travel with the
sequence; the soft target stops at termination and bootstraps through truncation from the final
observation, seen with the episode's own carries. Evaluation acts with the mean action.
"""

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import struct
from gymnax.environments import spaces

from memorax.buffers import EpisodeBuffer, make_episode_buffer
from memorax.environments import EpisodeStatistics, make, registered_envs
from memorax.experiment import (
    Progress,
    check_divides_devices,
    check_replay_buffer,
    check_replay_schedule,
    evaluate_saved_run,
    run_seeds,
    seed_keys,
    train_in_rounds,
    train_with_evaluations,
)
from memorax.networks import MLP, FeatureExtractor, Network, heads
from memorax.networks.torsos import TorsoName, check_torso, make_torso
from memorax.replay import insert_final_observation, n_step_targets
from memorax.results import write_run
from memorax.rollout import (
    Transition,
    evaluation_steps,
    greedy_episode_returns,
    mean_finished,
    next_step_inputs,
    zero_action,
)

NUM_CRITICS = 2


@dataclass(frozen=True)
class SACConfig:
    env_id: str = "Pendulum-P-v1"
    """Environment id for memorax.environments.make (continuous, bounded actions only)."""
    torso: TorsoName = "s5"
    """Memory model of the actor (and of the critics unless --critic-torso); mlp is the
    memoryless control."""
    critic_torso: TorsoName | None = None
    """Memory model of each critic; defaults to --torso. Every network has its own parameters."""
    hidden_size: int = 64
    """Width of the feature extractors and torsos."""
    num_layers: int = 1
    """Torso depth."""
    actor_head_size: int = 256
    """Width of the actor head's hidden ReLU layer between the torso and the Gaussian (S5's
    output is linear in its memory; the policy needs a nonlinear function of it)."""
    critic_head_size: int = 256
    """Width of the critics' hidden ReLU layer, where the action joins the torso's features."""
    num_envs: int = 8
    """Parallel environments per seed."""
    total_timesteps: int = 100_000
    """Env steps per seed for the whole run, --learning-starts included."""
    learning_starts: int = 5_000
    """Env steps of uniformly random actions that fill the buffer before training."""
    num_seeds: int = 4
    """Seeds trained at once in one compiled call (vmapped, sharded over devices)."""
    seed: int = 0
    """Base seed; seed i of the run uses key fold_in(key(seed), i)."""
    actor_lr: float = 3e-4
    """Adam step size of the actor."""
    critic_lr: float = 1e-3
    """Adam step size of the twin critics."""
    alpha_lr: float = 3e-4
    """Adam step size of the entropy temperature (its logarithm)."""
    utd_ratio: float = 0.25
    """Gradient updates per env step (all envs together); updates and env steps interleave so
    that their ratio is exact, e.g. 0.25 with 8 envs: 2 updates after every step of the envs."""
    buffer_size: int = 100_000
    """Replay capacity in env steps (all envs together); each keeps five torso carries."""
    batch_size: int = 16
    """Sequences per gradient update."""
    sequence_length: int = 32
    """Trained steps per replayed sequence (burn-in and one bootstrap step come on top)."""
    burn_in: int = 8
    """Steps replayed before the trained ones only to refresh the stored carries (no gradient)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics after every update: target <- tau * online + (1 - tau)
    * target."""
    initial_alpha: float = 1.0
    """Entropy temperature at the start."""
    target_entropy: float | None = None
    """Entropy the temperature steers the policy towards; default -(action dimensions)."""
    use_prev_action: bool = False
    """Feed the previous action (zero at episode starts) to every feature extractor."""
    use_prev_reward: bool = False
    """Feed the previous reward (zero at episode starts) to every feature extractor."""
    context_length: int = 64
    """Steps of memory of --torso attention (its key/value cache)."""
    eval_every: int = 5_000
    """Env steps per seed between deterministic evaluations; must divide the training steps."""
    eval_episodes: int = 32
    """Deterministic (mean-action) episodes per evaluation (one per eval env)."""
    output_dir: str = "runs"
    """Folder for results: config, curves, summary, plot and checkpoint of each run."""
    load: str | None = None
    """A run folder to load (its config and checkpoint) and evaluate again instead of training."""

    def __post_init__(self) -> None:
        check_torso(self.torso, self.hidden_size, self.num_layers)
        if self.critic_torso is not None:
            check_torso(self.critic_torso, self.hidden_size, self.num_layers, "--critic-torso")
        if self.env_id not in registered_envs():
            raise ValueError(
                f"--env-id {self.env_id!r} is unknown; valid ids: {', '.join(registered_envs())}"
            )
        for flag in (
            "num_envs", "total_timesteps", "learning_starts", "num_seeds", "buffer_size",
            "batch_size", "sequence_length", "eval_every", "eval_episodes", "context_length",
            "actor_head_size", "critic_head_size",
        ):  # fmt: skip
            if getattr(self, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
        if self.burn_in < 0:
            raise ValueError("--burn-in must be at least 0")
        for flag in ("actor_lr", "critic_lr", "alpha_lr", "initial_alpha", "utd_ratio"):
            if not getattr(self, flag) > 0:
                raise ValueError(f"--{flag.replace('_', '-')} must be positive")
        ratio = Fraction(self.utd_ratio).limit_denominator(1000) * self.num_envs
        if abs(float(ratio) - self.utd_ratio * self.num_envs) > 1e-9 or ratio.denominator > 100:
            raise ValueError(
                f"--utd-ratio {self.utd_ratio} x --num-envs {self.num_envs} must be a ratio of "
                f"small whole numbers (updates : steps of the envs), e.g. 0.25 or 0.5"
            )
        check_replay_schedule(
            num_envs=self.num_envs, total_timesteps=self.total_timesteps,
            learning_starts=self.learning_starts, eval_every=self.eval_every,
            buffer_size=self.buffer_size, steps_per_round=self.steps_per_round,
            round_flags="--num-envs x the env steps per round that --utd-ratio sets",
            replay_length=self.replay_length, replay_flags="--burn-in + --sequence-length + 1",
        )  # fmt: skip
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("--gamma and --tau must lie in (0, 1]")

    @property
    def updates_per_round(self) -> int:
        """Gradient updates per round (after steps_per_round env steps)."""
        return (Fraction(self.utd_ratio).limit_denominator(1000) * self.num_envs).numerator

    @property
    def env_steps_per_round(self) -> int:
        """Steps of every env per round."""
        return (Fraction(self.utd_ratio).limit_denominator(1000) * self.num_envs).denominator

    @property
    def steps_per_round(self) -> int:
        """Env steps per round, all envs together."""
        return self.num_envs * self.env_steps_per_round

    @property
    def training_steps(self) -> int:
        return self.total_timesteps - self.learning_starts

    @property
    def replay_length(self) -> int:
        return self.burn_in + self.sequence_length + 1

    @property
    def num_evaluations(self) -> int:
        return self.training_steps // self.eval_every


@struct.dataclass
class Carries:
    """Torso carries of every network: the actor's, and the twin critics' and target critics'
    stacked on a leading axis of NUM_CRITICS."""

    actor: Any
    critic: Any
    target: Any


@struct.dataclass
class Experience:
    """One stored env step: what the agent saw, did and got, and the carries it acted from."""

    observation: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_observation: jax.Array  # the episode's last observation where truncated
    carry: Carries  # every network's carry before this step (before its reset)


@struct.dataclass
class SACParams:
    actor: Any
    critic: Any  # twin critics, stacked on a leading axis
    target: Any  # their Polyak averages
    log_alpha: jax.Array


@struct.dataclass
class SACState:
    """The whole training state of one seed."""

    params: SACParams
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    buffer_state: Any
    env_state: Any
    observation: jax.Array  # [E, ...] the observation the next step acts on
    reset: jax.Array  # [E] the next step is the first of an episode
    prev_action: jax.Array  # [E, A]
    prev_reward: jax.Array  # [E]
    carry: Carries  # carries before the next step
    env_steps: jax.Array  # env steps per seed so far, warmup included
    updates: jax.Array  # gradient updates so far


def soft_q_targets(reward, terminated, truncated, value, position, replayed, gamma):
    """One-step soft targets r + gamma * V(s') for the first L - 1 steps of sequences [B, L].

    ``value`` [B, L + 1] is the soft value min_i Q'_i(s, a') - alpha * log pi(a' | s), a' ~ pi,
    over the replay inputs of ``insert_final_observation`` (``position`` and ``replayed`` are
    its outputs). A termination adds no value, a truncation its final observation's.
    Returns (targets [B, L - 1], valid [B, L - 1]).
    """
    next_value = jnp.take_along_axis(value, position, axis=1)
    return n_step_targets(
        reward, terminated, truncated, next_value, value[:, :-1], replayed, gamma, 1
    )


def critic_loss(q, targets, valid):
    """Sum over the twin critics of the mean squared error to the targets where valid.

    ``q`` [NUM_CRITICS, B, T], ``targets`` and ``valid`` [B, T]; gradients stop at the targets.
    """
    error = jnp.square(q - jax.lax.stop_gradient(targets)[None]) * valid[None]
    return (error.sum((1, 2)) / jnp.maximum(valid.sum(), 1)).sum()


def actor_loss(alpha, log_prob, q):
    """mean(alpha * log pi(a | s) - min_i Q_i(s, a)) with a ~ pi; ``q`` [NUM_CRITICS, ...]."""
    return (jax.lax.stop_gradient(alpha) * log_prob - q.min(0)).mean()


def temperature_loss(log_alpha, log_prob, target_entropy):
    """mean(-alpha * (log pi(a | s) + target entropy)): raises alpha while the policy's entropy
    is below the target, lowers it above."""
    return -(jnp.exp(log_alpha) * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


class SAC:
    """Recurrent SAC over a gymnax-style env with a continuous, bounded action space.

    ``actor`` is a ``Network`` with a ``SquashedGaussian`` head on the env's bounds; ``critic`` a
    ``Network`` with a ``ContinuousQNetwork`` head, initialised twice for the twin critics;
    ``buffer`` an episode buffer from ``memorax.buffers`` sampling sequences of burn-in + sequence
    length + 1 steps from any step (``sequence_starts="any"``), one row per env.
    """

    def __init__(
        self, cfg, env, env_params, actor, critic, actor_optimizer, critic_optimizer,
        alpha_optimizer, buffer,
    ):  # fmt: skip
        self.cfg = cfg
        self.env = EpisodeStatistics(env)
        self.env_params = env_params
        self.action_space = env.action_space(env_params)
        if not isinstance(self.action_space, spaces.Box):
            raise ValueError(f"--env-id {cfg.env_id}: SAC needs continuous (Box) actions")
        self.action_dim = int(np.prod(self.action_space.shape))
        self.target_entropy = (
            -float(self.action_dim) if cfg.target_entropy is None else cfg.target_entropy
        )
        self.actor = actor
        self.critic = critic
        self.actor_optimizer = actor_optimizer
        self.critic_optimizer = critic_optimizer
        self.alpha_optimizer = alpha_optimizer
        check_replay_buffer(
            buffer, cfg.replay_length, cfg.num_envs, "--burn-in + --sequence-length + 1"
        )
        if buffer.priority_exponent is not None:
            raise ValueError("sac_s5 samples uniformly; pass make_episode_buffer's buffer")
        self.buffer: EpisodeBuffer = buffer

    # --- the networks over sequences [B, T, ...] ---------------------------------------------
    def policy(self, params, inputs, carry):
        """(carry, action distribution [B, T]) of the actor over replay inputs."""
        observation, reset, prev_action, prev_reward = inputs
        return self.actor.apply(params, observation, reset, carry, prev_action, prev_reward)

    def q_values(self, params, inputs, carry, action):
        """(carries, q [NUM_CRITICS, B, T]) of the twin critics, params and carries stacked."""
        observation, reset, prev_action, prev_reward = inputs

        def one(params, carry):
            return self.critic.apply(
                params, observation, reset, carry, prev_action, prev_reward, action
            )

        return jax.vmap(one)(params, carry)

    def initialize_carries(self, batch_size: int) -> Carries:
        critic = jax.tree.map(
            lambda x: jnp.stack([x] * NUM_CRITICS), self.critic.initialize_carry(batch_size)
        )
        return Carries(self.actor.initialize_carry(batch_size), critic, critic)

    @staticmethod
    def _per_env(carry: Carries) -> Carries:
        """Carries as stored, per env: the critics' axis after the env's, [E, NUM_CRITICS, ...]."""

        def swap(x):
            return jnp.moveaxis(x, 0, 1)

        return carry.replace(
            critic=jax.tree.map(swap, carry.critic), target=jax.tree.map(swap, carry.target)
        )

    # --- acting -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> tuple[jax.Array, SACState]:
        key, env_key, actor_key, critic_key = jax.random.split(key, 4)
        num_envs = self.cfg.num_envs
        observation, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(env_key, num_envs), self.env_params
        )
        reset = jnp.ones((num_envs,), bool)
        prev_action = zero_action(self.action_space, num_envs)
        prev_reward = jnp.zeros((num_envs,))
        carry = self.initialize_carries(num_envs)
        inputs = (observation[:, None], reset[:, None], prev_action[:, None], prev_reward[:, None])
        actor_params = self.actor.init(actor_key, *inputs[:2], carry.actor, *inputs[2:])

        def init_critic(key):
            one = jax.tree.map(lambda x: x[0], carry.critic)
            return self.critic.init(key, *inputs[:2], one, *inputs[2:], prev_action[:, None])

        critic_params = jax.vmap(init_critic)(jax.random.split(critic_key, NUM_CRITICS))
        log_alpha = jnp.log(jnp.float32(self.cfg.initial_alpha))
        params = SACParams(actor_params, critic_params, critic_params, log_alpha)
        first = jax.tree.map(lambda x: x[0], self._per_env(carry))
        item = Experience(
            observation[0], prev_action[0], prev_reward[0], prev_action[0], prev_reward[0],
            reset[0], reset[0], observation[0], first,
        )  # fmt: skip
        state = SACState(
            params, self.actor_optimizer.init(actor_params),
            self.critic_optimizer.init(critic_params), self.alpha_optimizer.init(log_alpha),
            self.buffer.init(item), env_state, observation, reset, prev_action, prev_reward,
            carry, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
        )  # fmt: skip
        return key, state

    def _env_step(self, state: SACState, key: jax.Array, random: bool):
        """One step of every env with a sampled (or, in warmup, uniformly random) action; every
        network's carry advances and the step goes into the buffer with the carries before it."""
        action_key, env_key = jax.random.split(key)
        params, num_envs = state.params, self.cfg.num_envs
        inputs = (
            state.observation[:, None], state.reset[:, None], state.prev_action[:, None],
            state.prev_reward[:, None],
        )  # fmt: skip
        actor_carry, dist = self.policy(params.actor, inputs, state.carry.actor)
        if random:
            low, high = self.action_space.low, self.action_space.high
            shape = (num_envs, *self.action_space.shape)
            action = jax.random.uniform(action_key, shape, minval=low, maxval=high)
        else:
            action = dist.sample(seed=action_key)[:, 0]
        critic_carry, _ = self.q_values(params.critic, inputs, state.carry.critic, action[:, None])
        target_carry, _ = self.q_values(params.target, inputs, state.carry.target, action[:, None])
        observation, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(env_key, num_envs), state.env_state, action, self.env_params)
        step = Experience(
            state.observation, state.prev_action, state.prev_reward, action, reward, terminated,
            truncated, info["final_observation"], self._per_env(state.carry),
        )  # fmt: skip
        add = jax.tree.map(lambda x: x[:, None], (step, state.reset))
        done = jnp.logical_or(terminated, truncated)
        prev_action, prev_reward = next_step_inputs(done, action, reward)
        state = state.replace(
            buffer_state=self.buffer.add(state.buffer_state, *add),
            env_state=env_state,
            observation=observation,
            reset=done,
            prev_action=prev_action,
            prev_reward=prev_reward,
            carry=Carries(actor_carry, critic_carry, target_carry),
            env_steps=state.env_steps + num_envs,
        )
        return state, (step, info)

    def _act(self, state: SACState, key: jax.Array, num_steps: int, random: bool = False):
        def step(state, key):
            return self._env_step(state, key, random)

        return jax.lax.scan(step, state, jax.random.split(key, num_steps))

    def warmup(self, key: jax.Array, state: SACState, num_steps: int):
        """Fill the buffer with ``num_steps`` env steps per seed of uniformly random actions."""
        key, act_key = jax.random.split(key)
        state, _ = self._act(state, act_key, num_steps // self.cfg.num_envs, random=True)
        return key, state

    # --- learning -----------------------------------------------------------------------------
    def _replay(self, sample):
        """Replay inputs [B, L + 1] (one truncation's final observation inserted), the taken
        actions on them, where each original step lies, and every network's start carry."""
        sequence = sample.experience
        inputs, position, replayed = insert_final_observation(
            sequence, sample.reset, self.cfg.burn_in
        )
        longer = position.shape[1] + 1

        def spread(action, position):  # the inserted step gets a zero action, never used
            return jnp.zeros((longer, *action.shape[1:]), action.dtype).at[position].set(action)

        action = jax.vmap(spread)(sequence.action, position)
        start = self._per_env(jax.tree.map(lambda x: x[:, 0], sequence.carry))
        return inputs, action, position, replayed, start

    def _burn_in(self, run, params, inputs, carry):
        """Run the first burn_in replay steps to refresh a stored carry: no gradient reaches it
        or flows through it. Returns (carry, inputs of the remaining steps)."""
        burn = self.cfg.burn_in
        if burn:
            head = jax.tree.map(lambda x: x[:, :burn], inputs)
            carry, _ = run(jax.lax.stop_gradient(params), head, carry)
            carry = jax.lax.stop_gradient(carry)
        return carry, jax.tree.map(lambda x: x[:, burn:], inputs)

    def _targets(self, params: SACParams, sample, replay, key):
        """Soft one-step targets and their validity, [B, sequence_length], from the actor's and
        the target critics' stored carries."""
        cfg = self.cfg
        inputs, _, position, replayed, start = replay
        _, dist = self.policy(params.actor, inputs, start.actor)
        next_action, next_log_prob = dist.sample_and_log_prob(seed=key)
        _, q_target = self.q_values(params.target, inputs, start.target, next_action)
        value = q_target.min(0) - jnp.exp(params.log_alpha) * next_log_prob  # [B, L + 1]
        sequence = sample.experience
        targets, valid = soft_q_targets(
            sequence.reward, sequence.terminated, sequence.truncated, value, position, replayed,
            cfg.gamma,
        )  # fmt: skip
        return jax.lax.stop_gradient(targets[:, cfg.burn_in :]), valid[:, cfg.burn_in :]

    def _trained(self, x, position, axis):
        """Values of the trained steps, [.., B, sequence_length], from values over the replay
        steps after burn-in (``axis`` is the time axis of ``x``)."""
        burn = self.cfg.burn_in
        index = position[:, burn : burn + self.cfg.sequence_length] - burn
        index = jnp.broadcast_to(index, x.shape[: axis - 1] + index.shape)
        return jnp.take_along_axis(x, index, axis=axis)

    def _critic_loss(self, critic_params, replay, targets, valid):
        """The twin critics' loss on the trained steps, each critic started from its stored
        carry and burnt in."""
        inputs, action, position, _, start = replay
        burn = self.cfg.burn_in
        carry, rest = self._burn_in(
            lambda p, i, c: self.q_values(p, i, c, action[:, :burn]), critic_params, inputs,
            start.critic,
        )  # fmt: skip
        _, q = self.q_values(critic_params, rest, carry, action[:, burn:])
        q = self._trained(q, position, axis=2)  # [NUM_CRITICS, B, sequence_length]
        loss = critic_loss(q, targets, valid)
        return loss, {"critic_loss": loss, "q": q.mean(), "valid_fraction": valid.mean()}

    def _actor_loss(self, actor_params, log_alpha, critic_params, replay, key):
        """The actor's loss on the trained steps against the (just updated) critics, actor and
        critics each started from their stored carries and burnt in; also returns the log-probs
        of the sampled actions for the temperature."""
        inputs, action, position, _, start = replay
        burn = self.cfg.burn_in
        actor_carry, rest = self._burn_in(self.policy, actor_params, inputs, start.actor)
        _, dist = self.policy(actor_params, rest, actor_carry)
        new_action, log_prob = dist.sample_and_log_prob(seed=key)  # [B, T]
        critic_params = jax.lax.stop_gradient(critic_params)
        critic_carry, _ = self._burn_in(
            lambda p, i, c: self.q_values(p, i, c, action[:, :burn]), critic_params, inputs,
            start.critic,
        )  # fmt: skip
        _, q = self.q_values(critic_params, rest, critic_carry, new_action)
        log_prob = self._trained(log_prob, position, axis=1)
        q = self._trained(q, position, axis=2)
        return actor_loss(jnp.exp(log_alpha), log_prob, q), log_prob

    def _update(self, state: SACState, key: jax.Array):
        """One update of the critics, then the actor and the temperature, then the targets."""
        cfg = self.cfg
        sample_key, target_key, actor_key = jax.random.split(key, 3)
        sample = self.buffer.sample(state.buffer_state, sample_key)
        params = state.params
        replay = self._replay(sample)
        targets, valid = self._targets(params, sample, replay, target_key)
        critic_grads, metrics = jax.grad(self._critic_loss, has_aux=True)(
            params.critic, replay, targets, valid
        )
        updates, critic_opt_state = self.critic_optimizer.update(
            critic_grads, state.critic_opt_state, params.critic
        )
        critic = optax.apply_updates(params.critic, updates)
        (loss, log_prob), actor_grads = jax.value_and_grad(self._actor_loss, has_aux=True)(
            params.actor, params.log_alpha, critic, replay, actor_key
        )
        updates, actor_opt_state = self.actor_optimizer.update(
            actor_grads, state.actor_opt_state, params.actor
        )
        actor = optax.apply_updates(params.actor, updates)
        alpha_grad = jax.grad(temperature_loss)(params.log_alpha, log_prob, self.target_entropy)
        updates, alpha_opt_state = self.alpha_optimizer.update(
            alpha_grad, state.alpha_opt_state, params.log_alpha
        )
        log_alpha = optax.apply_updates(params.log_alpha, updates)
        target = optax.incremental_update(critic, params.target, cfg.tau)
        metrics = {
            **metrics, "actor_loss": loss, "alpha": jnp.exp(params.log_alpha),
            "entropy": -log_prob.mean(),
        }  # fmt: skip
        state = state.replace(
            params=SACParams(actor, critic, target, log_alpha),
            actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
            alpha_opt_state=alpha_opt_state, updates=state.updates + 1,
        )  # fmt: skip
        return state, metrics

    def _round(self, state: SACState, key: jax.Array):
        """env_steps_per_round steps of every env, then updates_per_round updates."""
        cfg = self.cfg
        act_key, update_key = jax.random.split(key)
        state, (steps, info) = self._act(state, act_key, cfg.env_steps_per_round)
        state, metrics = jax.lax.scan(
            self._update, state, jax.random.split(update_key, cfg.updates_per_round)
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        ended = info["returned_episode"]
        metrics["episodes"] = ended.sum()
        metrics["episode_return"] = mean_finished(info["returned_episode_returns"], ended)
        transitions = Transition(
            steps.observation, steps.action, steps.reward, steps.terminated | steps.truncated, info
        )
        return state, (transitions, metrics)

    def train(self, key: jax.Array, state: SACState, num_steps: int):
        """Train for ``num_steps`` env steps per seed (a multiple of steps_per_round).

        Returns (key, state, transitions): the last round's steps, with ``info["metrics"]``
        holding one row per round."""
        return train_in_rounds(
            self._round, key, state, num_steps, self.cfg.steps_per_round,
            "--num-envs x the env steps per round that --utd-ratio sets",
        )  # fmt: skip

    def evaluate(self, key: jax.Array, state: SACState, num_steps: int):
        """Deterministic evaluation (the squashed mean action) on eval_episodes fresh envs;
        returns (key, episode_return, finished), each [eval_episodes], of each env's first
        episode."""
        key, eval_key = jax.random.split(key)

        def act(carry, observation, reset, prev_action, prev_reward):
            inputs = (observation, reset, prev_action, prev_reward)
            carry, dist = self.policy(state.params.actor, inputs, carry)
            return carry, dist.mode()[:, 0]

        num_envs = self.cfg.eval_episodes
        returns, finished = greedy_episode_returns(
            eval_key, self.env, self.env_params, act, self.actor.initialize_carry(num_envs),
            num_envs, num_steps,
        )  # fmt: skip
        return key, returns, finished


def make_agent(cfg: SACConfig, env, env_params) -> SAC:
    """Networks, optimizers and buffer from the config: the one place they are chosen."""
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"--env-id {cfg.env_id} has discrete actions; SAC needs continuous ones")
    action_dim = int(np.prod(action_space.shape))
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), (action_dim,))
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), (action_dim,))
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"--env-id {cfg.env_id}: SAC's squashed actions need finite bounds")

    def features() -> FeatureExtractor:
        return FeatureExtractor(
            observation_extractor=MLP(features=(cfg.hidden_size,)),
            action_extractor=MLP(features=(32,)) if cfg.use_prev_action else None,
            reward_extractor=MLP(features=(16,)) if cfg.use_prev_reward else None,
        )

    actor = Network(
        features(),
        make_torso(cfg.torso, cfg.hidden_size, cfg.num_layers, cfg.context_length),
        heads.SquashedGaussian(
            action_dim, tuple(low.tolist()), tuple(high.tolist()), (cfg.actor_head_size,)
        ),
    )
    critic = Network(
        features(),
        make_torso(
            cfg.critic_torso or cfg.torso, cfg.hidden_size, cfg.num_layers, cfg.context_length
        ),
        heads.ContinuousQNetwork(features=(cfg.critic_head_size,)),
    )
    buffer = make_episode_buffer(
        max_length=cfg.buffer_size, min_length=cfg.learning_starts,
        sample_batch_size=cfg.batch_size, sample_sequence_length=cfg.replay_length,
        add_batch_size=cfg.num_envs, sequence_starts="any",
    )  # fmt: skip
    return SAC(
        cfg, env, env_params, actor, critic, optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr),
        optax.adam(cfg.alpha_lr), buffer,
    )  # fmt: skip


def main() -> None:
    cfg = tyro.cli(SACConfig)
    if cfg.load is not None:
        evaluate_saved_run(cfg.load, SACConfig, make_agent, cfg.seed, cfg.eval_episodes)
        return
    check_divides_devices(cfg.num_seeds)
    env, env_params = make(cfg.env_id)
    agent = make_agent(cfg, env, env_params)
    progress = Progress(cfg.num_evaluations, cfg.num_seeds, cfg.eval_every, cfg.learning_starts)
    run = train_with_evaluations(
        agent, cfg.learning_starts, cfg.eval_every, cfg.num_evaluations,
        evaluation_steps(env_params), progress,
    )  # fmt: skip
    critic_torso = cfg.critic_torso or cfg.torso
    print(
        f"sac_s5: {cfg.env_id}, actor torso {cfg.torso}, critic torso {critic_torso}, "
        f"{cfg.num_seeds} seeds x {cfg.total_timesteps:,} steps on {jax.local_device_count()} "
        f"{jax.devices()[0].platform} device(s); compiling...",
        flush=True,
    )
    (params, metrics, eval_return), timing = run_seeds(run, seed_keys(cfg.seed, cfg.num_seeds))
    name = f"sac_s5-{cfg.env_id}-{cfg.torso}"
    if critic_torso != cfg.torso:
        name += f"-critic-{critic_torso}"
    write_run(
        cfg.output_dir, name, cfg, metrics, eval_return, params, timing,
        steps_per_update=cfg.steps_per_round,
        updates_per_eval=cfg.eval_every // cfg.steps_per_round,
        first_step=cfg.learning_starts,
    )  # fmt: skip


if __name__ == "__main__":
    main()
