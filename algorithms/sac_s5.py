"""Recurrent soft actor-critic with S5 memory: the whole run, every seed, in one jitted call.

    python algorithms/sac_s5.py                       # S5 on position-only Pendulum
    python algorithms/sac_s5.py --torso mlp           # its memoryless twin
    python algorithms/sac_s5.py --critic-torso gru    # a different critic memory
    python algorithms/sac_s5.py --load runs/<run>     # evaluate a saved run again

The actor and the twin critics each have a memory torso of their own. Each stored step keeps the
carries every network (target critics included) had before it, so a replay may start anywhere,
each network from its own stored carry, refreshed by --burn-in steps without gradient or loss.
Soft targets stop at termination and bootstrap through truncation from the final observation,
seen with the episode's own carries. Evaluation acts with the mean action.
"""

from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import struct
from gymnax.environments import spaces

from memorax import replay, results
from memorax.buffers import make_episode_buffer
from memorax.checkpoints import Checkpoints
from memorax.divergence import all_finite, with_evaluation
from memorax.environments import EpisodeStatistics, check_env_id, make
from memorax.experiment import Progress, announce_run, check_divides_devices, run_once, train_seeds
from memorax.flags import RunFlags, check_counts, check_finite, check_whole_rounds
from memorax.networks import MLP, FeatureExtractor, Network, heads, observation_extractor
from memorax.networks.torsos import TorsoName, check_torso, make_torso
from memorax.rollout import (
    StepInput,
    Transition,
    episode_metrics,
    evaluation_steps,
    greedy_episode_returns,
    mean_finished,
)
from memorax.sweep import parse_sweep, swept, with_values
from memorax.tracking import open_tracker

NUM_CRITICS = 2
ROUND_FLAGS = "--num-envs x the env steps per round that --utd-ratio sets"
REPLAY_FLAGS = "--burn-in + --sequence-length + 1"

SCRIPT = "sac_s5"


@dataclass(frozen=True)
class SACConfig(RunFlags):
    fixed_in_sweep: ClassVar = {"utd_ratio": "it sets how many updates a round makes"}
    env_id: str = "Pendulum-P-v1"
    """Environment id for memorax.environments.make (continuous, bounded actions only)."""
    torso: TorsoName = "s5"
    """Memory model of the actor (and of the critics unless --critic-torso); mlp: no memory."""
    critic_torso: TorsoName | None = None
    """Memory model of each critic; defaults to --torso. Every network has its own parameters."""
    hidden_size: int = 64
    """Width of the feature extractors and torsos."""
    num_layers: int = 1
    """Torso depth."""
    actor_head_size: int = 256
    """Width of the actor head's hidden ReLU layer (S5's output is linear in its memory)."""
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
    """Gradient updates per env step (all envs), e.g. 0.25 with 8 envs: 2 per step of the envs."""
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
    """Polyak rate of the target critics after every update."""
    initial_alpha: float = 1.0
    """Entropy temperature at the start."""
    target_entropy: float | None = None
    """Entropy the temperature steers the policy towards; default -(action dimensions)."""
    use_prev_action: bool = False
    """Feed the previous action (zero at episode starts) to every feature extractor."""
    use_prev_reward: bool = False
    """Feed the previous reward (zero at episode starts) to every feature extractor."""
    context_length: int = 64
    """Steps of memory of the attention torsos (attention*, gtrxl): their key/value cache."""
    eval_every: int = 5_000
    """Env steps per seed between deterministic evaluations (whole rounds; divides the training)."""
    eval_episodes: int = 32
    """Deterministic (mean-action) episodes per evaluation (one per eval env)."""

    def __post_init__(self) -> None:
        check_finite(vars(self))
        check_counts(vars(self), zero_ok=("burn_in",))
        check_torso(self.torso, self.hidden_size, self.num_layers)
        if self.critic_torso is not None:
            check_torso(self.critic_torso, self.hidden_size, self.num_layers, "--critic-torso")
        check_env_id(self.env_id, "--env-id")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "initial_alpha", "utd_ratio"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        updates, steps = self.updates_per_round, self.env_steps_per_round
        if abs(updates / steps - self.utd_ratio * self.num_envs) > 1e-9 or steps > 100:
            raise ValueError(
                f"--utd-ratio {self.utd_ratio} x --num-envs {self.num_envs} must be a ratio of "
                f"small whole numbers (updates : steps of the envs), e.g. 0.25 or 0.5"
            )
        replay.check_replay_schedule(
            num_envs=self.num_envs, total_timesteps=self.total_timesteps,
            learning_starts=self.learning_starts, eval_every=self.eval_every,
            buffer_size=self.buffer_size, steps_per_round=self.steps_per_round,
            round_flags=ROUND_FLAGS, replay_length=self.replay_length, replay_flags=REPLAY_FLAGS,
        )  # fmt: skip
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("--gamma and --tau must lie in (0, 1]")
        self.check_run_flags(self.eval_every, self.training_steps)

    @property
    def updates_per_round(self) -> int:
        return (Fraction(self.utd_ratio).limit_denominator(1000) * self.num_envs).numerator

    @property
    def env_steps_per_round(self) -> int:  # steps of every env
        return (Fraction(self.utd_ratio).limit_denominator(1000) * self.num_envs).denominator

    @property
    def steps_per_round(self) -> int:  # all envs together
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
    """Torso carries: the actor's [E, ...], the twin critics' and target critics' [E, 2, ...]."""

    actor: Any
    critic: Any
    target: Any


@struct.dataclass
class Experience:
    """One stored env step: the input acted on, what was done and got, the carries before it."""

    inputs: StepInput
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_observation: jax.Array  # the episode's last observation where truncated
    carry: Carries


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
    opt_states: tuple  # the actor's, the critics' and the temperature's optimizer states
    buffer_state: Any
    env_state: Any
    inputs: StepInput  # [E, ...] what the next step acts on
    carry: Carries  # carries before the next step
    env_steps: jax.Array  # env steps per seed so far, warmup included
    updates: jax.Array  # gradient updates so far


def soft_q_targets(reward, terminated, truncated, value, position, replayed, gamma):
    """One-step soft targets and validity [B, L - 1] for sequences [B, L]. ``value`` [B, L + 1]
    is min_i Q'_i(s, a') - alpha * log pi(a' | s), a' ~ pi, on the replay inputs of
    ``insert_final_observation``, which gives ``position`` and ``replayed``."""
    next_value = jnp.take_along_axis(value, position, axis=1)
    return replay.n_step_targets(
        reward, terminated, truncated, next_value, value[:, :-1], replayed, gamma, 1
    )


def critic_loss(q, targets, valid):
    """Sum over critics of the mean squared error of ``q`` [2, B, T] to ``targets`` where valid."""
    error = jnp.square(q - jax.lax.stop_gradient(targets)[None]) * valid[None]
    return (error.sum((1, 2)) / jnp.maximum(valid.sum(), 1)).sum()


def actor_loss(alpha, log_prob, q):
    """mean(alpha * log pi(a | s) - min_i Q_i(s, a)) with a ~ pi; ``q`` [NUM_CRITICS, ...]."""
    return (jax.lax.stop_gradient(alpha) * log_prob - q.min(0)).mean()


def temperature_loss(log_alpha, log_prob, target_entropy):
    """mean(-alpha * (log pi(a | s) + target entropy)): alpha rises while entropy is too low."""
    return -(jnp.exp(log_alpha) * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


class SAC:
    """Recurrent SAC: ``actor`` a ``Network`` with a ``SquashedGaussian`` head, ``critic`` one with
    a ``ContinuousQNetwork`` head (initialised twice), ``buffer`` one of ``make_episode_buffer``."""

    def __init__(
        self, cfg, env, env_params, actor, critic, actor_optimizer, critic_optimizer,
        alpha_optimizer, buffer,
    ):  # fmt: skip
        self.cfg, self.env, self.env_params = cfg, EpisodeStatistics(env), env_params
        self.action_space = env.action_space(env_params)
        default_entropy = -float(np.prod(self.action_space.shape))  # -(action dimensions)
        self.target_entropy = default_entropy if cfg.target_entropy is None else cfg.target_entropy
        self.actor, self.critic, self.buffer = actor, critic, buffer
        self.actor_optimizer, self.critic_optimizer = actor_optimizer, critic_optimizer
        self.alpha_optimizer = alpha_optimizer
        replay.check_replay_buffer(buffer, cfg.replay_length, cfg.num_envs, REPLAY_FLAGS)
        if buffer.priority_exponent is not None:
            raise ValueError("sac_s5 samples uniformly; pass make_episode_buffer's buffer")

    def policy(self, params, inputs: StepInput, carry):
        """(carry, action distribution [B, T]) of the actor."""
        return self.actor.apply(params, *inputs.network_args(carry))

    def q_values(self, params, inputs: StepInput, carry, action):
        """(carries [B, 2, ...], q [2, B, T]) of the twin critics (params stacked on axis 0)."""
        in_axes = (0, None, None, 1, None, None, None)  # params and carry: one per critic
        apply = jax.vmap(self.critic.apply, in_axes=in_axes, out_axes=(1, 0))
        return apply(params, *inputs.network_args(carry), action)

    # --- acting -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> tuple[jax.Array, SACState]:
        key, env_key, actor_key, critic_key = jax.random.split(key, 4)
        num_envs = self.cfg.num_envs
        observation, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(env_key, num_envs), self.env_params
        )
        inputs = StepInput.first(observation, self.action_space)
        one_critic = self.critic.initialize_carry(num_envs)
        critics = jax.tree.map(lambda x: jnp.stack([x] * NUM_CRITICS, 1), one_critic)
        carry = Carries(actor=self.actor.initialize_carry(num_envs), critic=critics, target=critics)
        sequence = inputs.as_sequence()
        actor = self.actor.init(actor_key, *sequence.network_args(carry.actor))
        critic_args = (*sequence.network_args(one_critic), sequence.prev_action)
        critic_keys = jax.random.split(critic_key, NUM_CRITICS)
        critic = jax.vmap(lambda key: self.critic.init(key, *critic_args))(critic_keys)
        log_alpha = jnp.log(jnp.float32(self.cfg.initial_alpha))
        item = Experience(  # one stored step, for the buffer's shapes
            inputs=inputs, action=inputs.prev_action, reward=inputs.prev_reward,
            terminated=inputs.reset, truncated=inputs.reset, final_observation=observation,
            carry=carry,
        )  # fmt: skip
        return key, SACState(
            params=SACParams(actor=actor, critic=critic, target=critic, log_alpha=log_alpha),
            opt_states=(
                self.actor_optimizer.init(actor),
                self.critic_optimizer.init(critic),
                self.alpha_optimizer.init(log_alpha),
            ),
            buffer_state=self.buffer.init(jax.tree.map(lambda x: x[0], item)),
            env_state=env_state, inputs=inputs, carry=carry,
            env_steps=jnp.zeros((), jnp.int32), updates=jnp.zeros((), jnp.int32),
        )  # fmt: skip

    def _env_step(self, state: SACState, key: jax.Array, random: bool = False):
        """A step of every env (warmup: uniform actions), stored with every carry before it."""
        action_key, env_key = jax.random.split(key)
        params, num_envs = state.params, self.cfg.num_envs
        sequence = state.inputs.as_sequence()
        actor_carry, dist = self.policy(params.actor, sequence, state.carry.actor)
        if random:
            space, shape = self.action_space, (num_envs, *self.action_space.shape)
            action = jax.random.uniform(action_key, shape, minval=space.low, maxval=space.high)
        else:
            action = dist.sample(seed=action_key)[:, 0]
        taken = action[:, None]
        critic_carry, _ = self.q_values(params.critic, sequence, state.carry.critic, taken)
        target_carry, _ = self.q_values(params.target, sequence, state.carry.target, taken)
        observation, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(env_key, num_envs), state.env_state, action, self.env_params)
        step = Experience(
            inputs=state.inputs, action=action, reward=reward, terminated=terminated,
            truncated=truncated, final_observation=info["final_observation"], carry=state.carry,
        )  # fmt: skip
        add = jax.tree.map(lambda x: x[:, None], (step, state.inputs.reset))
        return state.replace(
            buffer_state=self.buffer.add(state.buffer_state, *add),
            env_state=env_state,
            inputs=StepInput.after(observation, terminated | truncated, action, reward),
            carry=Carries(actor=actor_carry, critic=critic_carry, target=target_carry),
            env_steps=state.env_steps + num_envs,
        ), (step, info)

    def warmup(self, key: jax.Array, state: SACState, num_steps: int):
        """Fill the buffer with ``num_steps`` env steps per seed of uniformly random actions."""
        key, act_key = jax.random.split(key)
        step_keys = jax.random.split(act_key, num_steps // self.cfg.num_envs)
        state, _ = jax.lax.scan(partial(self._env_step, random=True), state, step_keys)
        return key, state

    # --- learning -----------------------------------------------------------------------------
    def _replay(self, seq: Experience):
        """``seq`` [B, L] as replayed: (inputs [B, L + 1] with one final observation inserted, the
        taken actions on them, ``position`` and ``replayed``, every network's start carry)."""
        inputs, position, replayed = replay.insert_final_observation(seq, self.cfg.burn_in)
        rows = jnp.arange(position.shape[0])[:, None]  # the inserted step's action stays zero
        action = jnp.zeros_like(inputs.prev_action).at[rows, position].set(seq.action)
        start = jax.tree.map(lambda x: x[:, 0], seq.carry)
        return inputs, action, position, replayed, start

    def _targets(self, params: SACParams, seq: Experience, batch, key):
        """Soft targets and validity [B, sequence_length], from the actor and target critics."""
        inputs, _, position, replayed, start = batch
        _, dist = self.policy(params.actor, inputs, start.actor)
        next_action, next_log_prob = dist.sample_and_log_prob(seed=key)
        _, q_target = self.q_values(params.target, inputs, start.target, next_action)
        value = q_target.min(0) - jnp.exp(params.log_alpha) * next_log_prob  # [B, L + 1]
        targets, valid = soft_q_targets(
            seq.reward, seq.terminated, seq.truncated, value, position, replayed, self.cfg.gamma
        )
        return jax.lax.stop_gradient(targets[:, self.cfg.burn_in :]), valid[:, self.cfg.burn_in :]

    def _replayed(self, apply, params, carry, inputs, *action):
        """``apply``'s outputs after burn-in, which refreshes ``carry`` without gradient."""
        burn = self.cfg.burn_in
        if burn:
            head = jax.tree.map(lambda x: x[:, :burn], (inputs, *action))
            carry, _ = apply(jax.lax.stop_gradient(params), head[0], carry, *head[1:])
            carry = jax.lax.stop_gradient(carry)
        rest = jax.tree.map(lambda x: x[:, burn:], (inputs, *action))
        return apply(params, rest[0], carry, *rest[1:])[1]

    def _trained(self, x, position):
        """The trained steps [..., B, sequence_length] of ``x`` [..., B, T] after burn-in."""
        burn = self.cfg.burn_in
        index = position[:, burn : burn + self.cfg.sequence_length] - burn
        return jnp.take_along_axis(x, jnp.broadcast_to(index, x.shape[:-2] + index.shape), axis=-1)

    def _critic_loss(self, critic_params, batch, targets, valid):
        inputs, action, position, _, start = batch
        q = self._replayed(self.q_values, critic_params, start.critic, inputs, action)
        q = self._trained(q, position)  # [NUM_CRITICS, B, sequence_length]
        loss = critic_loss(q, targets, valid)
        return loss, {"critic_loss": loss, "q": q.mean(), "valid_fraction": valid.mean()}

    def _actor_loss(self, actor_params, log_alpha, critic_params, batch, key):
        """Against the updated critics, on the actor's actions after burn-in -> (loss, log_prob)."""
        inputs, action, position, _, start = batch
        dist = self._replayed(self.policy, actor_params, start.actor, inputs)
        new_action, log_prob = dist.sample_and_log_prob(seed=key)  # [B, T]
        action = jnp.concatenate([action[:, : self.cfg.burn_in], new_action], axis=1)
        critic_params = jax.lax.stop_gradient(critic_params)
        q = self._replayed(self.q_values, critic_params, start.critic, inputs, action)
        log_prob = self._trained(log_prob, position)
        q = self._trained(q, position)
        return actor_loss(jnp.exp(log_alpha), log_prob, q), log_prob

    def _update(self, state: SACState, key: jax.Array):
        """One gradient step: the critics, then the actor and the temperature, then the targets."""
        params, (actor_opt, critic_opt, alpha_opt) = state.params, state.opt_states
        sample_key, target_key, actor_key = jax.random.split(key, 3)
        seq = self.buffer.sample(state.buffer_state, sample_key).experience
        batch = self._replay(seq)
        targets, valid = self._targets(params, seq, batch, target_key)
        critic_grad, metrics = jax.grad(self._critic_loss, has_aux=True)(
            params.critic, batch, targets, valid
        )
        updates, critic_opt = self.critic_optimizer.update(critic_grad, critic_opt, params.critic)
        critic = optax.apply_updates(params.critic, updates)
        (loss, log_prob), actor_grad = jax.value_and_grad(self._actor_loss, has_aux=True)(
            params.actor, params.log_alpha, critic, batch, actor_key
        )
        updates, actor_opt = self.actor_optimizer.update(actor_grad, actor_opt, params.actor)
        actor = optax.apply_updates(params.actor, updates)
        alpha_grad = jax.grad(temperature_loss)(params.log_alpha, log_prob, self.target_entropy)
        updates, alpha_opt = self.alpha_optimizer.update(alpha_grad, alpha_opt, params.log_alpha)
        log_alpha = optax.apply_updates(params.log_alpha, updates)
        target = optax.incremental_update(critic, params.target, self.cfg.tau)
        metrics.update(actor_loss=loss, alpha=jnp.exp(params.log_alpha), entropy=-log_prob.mean())
        return state.replace(
            params=SACParams(actor=actor, critic=critic, target=target, log_alpha=log_alpha),
            opt_states=(actor_opt, critic_opt, alpha_opt),
            updates=state.updates + 1,
        ), metrics

    def _round(self, state: SACState, key: jax.Array):
        """env_steps_per_round steps of every env, then updates_per_round gradient steps."""
        act_key, update_key = jax.random.split(key)
        step_keys = jax.random.split(act_key, self.cfg.env_steps_per_round)
        state, (steps, info) = jax.lax.scan(self._env_step, state, step_keys)
        update_keys = jax.random.split(update_key, self.cfg.updates_per_round)
        state, metrics = jax.lax.scan(self._update, state, update_keys)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics = {**metrics, "finite": all_finite(metrics, state.params), **episode_metrics(info)}
        transitions = Transition(
            observation=steps.inputs.observation, action=steps.action, reward=steps.reward,
            done=steps.terminated | steps.truncated, info=info, metrics={},
        )  # fmt: skip
        return state, transitions, metrics

    def train(self, key: jax.Array, state: SACState, num_steps: int):
        """``num_steps`` env steps per seed in whole rounds -> (key, state, the last round's
        steps with one metrics row per round). train(n1); train(n2) equals train(n1 + n2)."""
        check_whole_rounds(num_steps, self.cfg.steps_per_round, ROUND_FLAGS)

        def one_round(carry, _):
            key, state = carry
            key, round_key = jax.random.split(key)
            state, transitions, metrics = self._round(state, round_key)
            return (key, state), (transitions, metrics)

        rounds = num_steps // self.cfg.steps_per_round
        (key, state), (transitions, metrics) = jax.lax.scan(one_round, (key, state), None, rounds)
        last = jax.tree.map(lambda x: x[-1], transitions)
        return key, state, last.replace(metrics=metrics)

    def evaluate(self, key: jax.Array, state: SACState, num_steps: int):
        """Mean actions on eval_episodes fresh envs -> (key, first-episode return, finished)."""
        key, eval_key = jax.random.split(key)

        def act(carry, inputs):
            carry, dist = self.policy(state.params.actor, inputs, carry)
            return carry, dist.mode()[:, 0]

        carry = self.actor.initialize_carry(self.cfg.eval_episodes)
        return key, *greedy_episode_returns(
            eval_key, self.env, self.env_params, act, carry, self.cfg.eval_episodes, num_steps
        )


def make_agent(cfg: SACConfig, env, env_params, values=None) -> SAC:
    """Networks, optimizers and buffer from the config (with a sweep config's ``values`` in place
    of its fields inside the compiled run): the one place they are chosen."""
    cfg = with_values(cfg, values or {})
    observation_shape = env.observation_space(env_params).shape
    action_space = env.action_space(env_params)
    if not isinstance(action_space, spaces.Box):
        raise ValueError(f"--env-id {cfg.env_id} has discrete actions; SAC needs continuous ones")
    action_dim = int(np.prod(action_space.shape))
    low = np.broadcast_to(np.asarray(action_space.low, np.float32), (action_dim,))
    high = np.broadcast_to(np.asarray(action_space.high, np.float32), (action_dim,))
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"--env-id {cfg.env_id}: SAC's squashed actions need finite bounds")

    def network(torso: TorsoName, head) -> Network:
        features = FeatureExtractor(
            observation_extractor=observation_extractor(observation_shape, cfg.hidden_size),
            action_extractor=MLP(features=(32,)) if cfg.use_prev_action else None,
            reward_extractor=MLP(features=(16,)) if cfg.use_prev_reward else None,
        )
        torso = make_torso(torso, cfg.hidden_size, cfg.num_layers, cfg.context_length)
        return Network(features, torso, head)

    bounds = tuple(low.tolist()), tuple(high.tolist())
    actor = network(cfg.torso, heads.SquashedGaussian(action_dim, *bounds, (cfg.actor_head_size,)))
    critic_head = heads.ContinuousQNetwork(features=(cfg.critic_head_size,))
    critic = network(cfg.critic_torso or cfg.torso, critic_head)
    buffer = make_episode_buffer(
        max_length=cfg.buffer_size, min_length=cfg.learning_starts,
        sample_batch_size=cfg.batch_size, sample_sequence_length=cfg.replay_length,
        add_batch_size=cfg.num_envs, sequence_starts="any",
    )  # fmt: skip
    optimizers = (optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr))
    return SAC(cfg, env, env_params, actor, critic, *optimizers, buffer)


def start(agent: SAC, key: jax.Array):
    """One seed before training: its key and state after --learning-starts random steps."""
    key, state = agent.init(key)
    return agent.warmup(key, state, agent.cfg.learning_starts)


def train_periods(agent: SAC, carry, first_period, num_periods: int, progress=None):
    """``num_periods`` evaluation periods of one seed from ``carry`` (key, state): each trains for
    --eval-every env steps, then evaluates. Returns (carry, (metrics [rounds], eval_return
    [periods], NaN where no evaluation episode finished))."""
    eval_steps = evaluation_steps(agent.env_params)

    def period(carry, index):
        key, state = carry
        key, state, transitions = agent.train(key, state, agent.cfg.eval_every)
        key, returns, finished = agent.evaluate(key, state, eval_steps)
        eval_return = mean_finished(returns, finished)
        if progress is not None:
            progress.report(index, eval_return, transitions.metrics)
        metrics = with_evaluation(transitions.metrics, returns, finished)
        return (key, state), (metrics, eval_return)

    indices = first_period + jnp.arange(num_periods)
    carry, (metrics, eval_return) = jax.lax.scan(period, carry, indices)
    return carry, (jax.tree.map(lambda x: x.reshape(-1), metrics), eval_return)


def evaluate_saved_run(cfg: SACConfig, env=None, env_params=None) -> np.ndarray:
    """``--load``: evaluate every run's saved parameters again (each seed, or each config and seed
    of a sweep), on --eval-episodes episodes of its env (``results.run_env``); per-run returns."""
    with results.user_errors():  # a wrong folder, a damaged file, an env it cannot rebuild
        saved_cfg, checkpoint = results.read_run(
            cfg.load, SCRIPT, SACConfig, eval_episodes=cfg.eval_episodes
        )
        env, env_params, _ = results.run_env(saved_cfg.env_id, make, env, env_params, load=cfg.load)
        agent = make_agent(saved_cfg, env, env_params)
        sweep = parse_sweep(saved_cfg)
        _, keys, _ = sweep.inputs(cfg.seed)
        _, states = run_once(jax.vmap(agent.init), keys)
        states = states.replace(params=results.load_checkpoint(checkpoint, states.params))
    evaluate = jax.jit(jax.vmap(partial(agent.evaluate, num_steps=evaluation_steps(env_params))))
    _, returns, finished = evaluate(keys, states)
    title = f"deterministic evaluation of {cfg.load}"
    return results.print_evaluation(title, returns, finished, sweep)


def run(cfg: SACConfig, env=None, env_params=None):
    """Train (or --resume) on make(cfg.env_id) or a user's gymnax env: (run folder, summary)."""
    with results.user_errors():  # setup mistakes: one line naming the flag, before compiling
        if resume := cfg.resume:
            cfg = results.read_config(resume, "--resume", SCRIPT, SACConfig)
        env, env_params, record = results.run_env(cfg.env_id, make, env, env_params, resume=resume)
        sweep = parse_sweep(cfg)
        check_divides_devices(sweep.num_runs, "--num-seeds x --sweep configs")
        agent_for = partial(make_agent, cfg, env, env_params)
        agent_for({})  # the model's own checks (e.g. the action space), before compiling
        critic = "" if cfg.critic_torso in (None, cfg.torso) else f"-critic-{cfg.critic_torso}"
        config = results.config_dict(cfg, SCRIPT, record)
        name = f"{SCRIPT}-{record['name']}-{cfg.torso}{critic}"
        run_dir = resume or results.new_run_dir(cfg.output_dir, name, config)
        checkpoints = Checkpoints(run_dir, cfg.checkpoint_every // cfg.eval_every, SCRIPT)
        if resume:
            checkpoints.check_resumable()
        tracker = open_tracker(
            cfg.track, run_dir, name, config, sweep.runs(),
            wandb_project=cfg.wandb_project, wandb_entity=cfg.wandb_entity,
        )  # fmt: skip
    progress = Progress(
        cfg.num_evaluations, sweep.num_runs, cfg.eval_every, cfg.learning_starts, tracker=tracker
    )
    torsos = f"torso {cfg.torso}, critics {cfg.critic_torso or cfg.torso}"
    announce_run(f"{SCRIPT}: {record['name']}, {torsos}", sweep, cfg.total_timesteps)
    (_, _, (_, state)), (metrics, eval_return), timing = train_seeds(
        *swept(agent_for, start, train_periods, progress), sweep.inputs(cfg.seed),
        cfg.num_evaluations, checkpoints,
    )  # fmt: skip
    summary = results.write_run(
        run_dir, config, metrics, eval_return, state.params, timing,
        steps_per_round=cfg.steps_per_round, eval_every=cfg.eval_every,
        first_step=cfg.learning_starts, sweep=sweep,
    )  # fmt: skip
    checkpoints.remove()
    progress.close()
    return run_dir, summary


def main() -> None:
    cfg = tyro.cli(SACConfig)
    results.check_saved_run_flags(cfg.load, cfg.resume)
    if cfg.load is not None:
        evaluate_saved_run(cfg)
    elif run(cfg)[1]["diverged"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
