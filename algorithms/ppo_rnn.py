"""Recurrent PPO: the whole training run, every seed, in one jitted call (PureJaxRL style).

    python algorithms/ppo_rnn.py                                  # GRU on position-only CartPole
    python algorithms/ppo_rnn.py --torso mlp                      # its memoryless twin
    python algorithms/ppo_rnn.py --env-id RepeatPreviousEasy --total-timesteps 2000000
    python algorithms/ppo_rnn.py --load runs/<run>                # evaluate a saved run again
    python algorithms/ppo_rnn.py --checkpoint-every 100000        # resumable: --resume runs/<run>

Recurrent details that decide whether memory works: every rollout stores the carry it started
from; minibatches are whole env sequences replayed from that carry with the rollout's reset flags,
so training sees exactly the function that acted; the previous action and reward inputs are zeroed
at episode starts; GAE bootstraps through truncation from the value of the final observation and
never through termination.
"""

from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import struct
from gymnax.environments import spaces

from memorax import results
from memorax.checkpoints import Checkpoints
from memorax.divergence import all_finite, with_evaluation
from memorax.environments import EpisodeStatistics, check_env_id, make
from memorax.experiment import Progress, announce_run, check_divides_devices, run_once, train_seeds
from memorax.flags import RunFlags, check_counts, check_finite, check_whole_rounds
from memorax.networks import MLP, FeatureExtractor, Network, SharedActorCritic, heads, shares_torso
from memorax.networks.feature_extractor import observation_extractor
from memorax.networks.torsos import TorsoName, check_torso, make_torso
from memorax.returns import generalized_advantage_estimate
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

SCRIPT = "ppo_rnn"


@dataclass(frozen=True)
class PPOConfig(RunFlags):
    env_id: str = "CartPole-P-v1"
    """Environment id for memorax.environments.make: any gymnax id or memorax memory task."""
    torso: TorsoName = "gru"
    """Memory model; mlp is the memoryless control."""
    hidden_size: int = 128
    """Width of the feature extractor, torso and heads' input."""
    num_layers: int = 1
    """Torso depth."""
    num_envs: int = 16
    """Parallel environments per seed."""
    num_steps: int = 125
    """Steps per env per rollout; a round is one rollout of num_envs x num_steps env steps, then
    --update-epochs x --num-minibatches gradient updates on it."""
    total_timesteps: int = 500_000
    """Env steps per seed for the whole run."""
    num_seeds: int = 4
    """Seeds trained at once in one compiled call (vmapped, sharded over devices)."""
    seed: int = 0
    """Base seed; seed i of the run uses key fold_in(key(seed), i)."""
    learning_rate: float = 1e-3
    """Adam step size (the start of the schedule when --anneal-lr)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to zero over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_coef: float = 0.2
    """PPO ratio clip; also the value clip when --clip-value-loss."""
    clip_value_loss: bool = True
    """Clip the value update around the rollout's values."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per epoch; each holds num_envs / num_minibatches whole env sequences."""
    shared_torso: bool = False
    """One feature extractor and torso for actor and critic (one carry) instead of two."""
    use_prev_action: bool = False
    """Feed the previous action (zero at episode starts) to the feature extractor."""
    use_prev_reward: bool = False
    """Feed the previous reward (zero at episode starts) to the feature extractor."""
    use_reset_flag: bool = False
    """Feed the episode-start flag to the feature extractor (POPGym's Antialias wrapper)."""
    context_length: int = 64
    """Steps of memory of the attention torsos (attention*, gtrxl): their key/value cache."""
    eval_every: int = 20_000
    """Env steps per seed between greedy evaluations: a multiple of --num-envs x --num-steps that
    divides the training steps."""
    eval_episodes: int = 32
    """Greedy episodes per evaluation (one per eval env)."""

    def __post_init__(self) -> None:
        check_finite(vars(self))
        check_counts(vars(self))
        check_torso(self.torso, self.hidden_size, self.num_layers)
        check_env_id(self.env_id, "--env-id")
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"--num-envs ({self.num_envs}) must be divisible by --num-minibatches "
                f"({self.num_minibatches}): minibatches are whole env sequences"
            )
        if self.total_timesteps < self.steps_per_round:
            raise ValueError(
                f"--total-timesteps ({self.total_timesteps}) is less than one round of "
                f"--num-envs x --num-steps = {self.steps_per_round} env steps"
            )
        if self.eval_every % self.steps_per_round or self.training_steps % self.eval_every:
            raise ValueError(
                f"--eval-every ({self.eval_every}) must be a multiple of --num-envs x --num-steps "
                f"= {self.steps_per_round} env steps that divides the {self.training_steps} "
                f"training steps (--total-timesteps in whole rounds)"
            )
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ValueError("--gamma must lie in (0, 1] and --gae-lambda in [0, 1]")
        if self.learning_rate <= 0 or self.clip_coef <= 0 or self.max_grad_norm <= 0:
            raise ValueError("--learning-rate, --clip-coef and --max-grad-norm must be positive")
        if self.ent_coef < 0 or self.vf_coef < 0:
            raise ValueError("--ent-coef and --vf-coef must be at least 0")
        self.check_run_flags(self.eval_every, self.training_steps)

    @property
    def steps_per_round(self) -> int:
        """Env steps per round (one rollout), all envs together."""
        return self.num_envs * self.num_steps

    @property
    def num_rounds(self) -> int:
        return self.total_timesteps // self.steps_per_round

    @property
    def training_steps(self) -> int:
        """Env steps per seed the run trains for: --total-timesteps in whole rounds."""
        return self.num_rounds * self.steps_per_round

    @property
    def num_evaluations(self) -> int:
        return self.training_steps // self.eval_every


@struct.dataclass
class PPOState:
    """The whole training state of one seed."""

    params: tuple  # (shared,) with a shared torso, else (actor, critic)
    opt_states: tuple  # one optimizer state per entry of params
    env_state: Any
    inputs: StepInput  # [E, ...] what the next step acts on
    carry: Any  # torso carry (or (actor, critic) carries) before the next step
    env_steps: jax.Array  # env steps per seed so far


@struct.dataclass
class Rollout:
    """What one rollout keeps for the round's updates, time-major [T, E, ...]."""

    inputs: StepInput
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_value: jax.Array  # value of the final observation; used where truncated


def ppo_loss(
    *,
    log_prob,
    entropy,
    value,
    old_log_prob,
    old_value,
    advantages,
    targets,
    clip_coef,
    clip_value_loss,
    vf_coef,
    ent_coef,
):
    """The clipped PPO objective over a minibatch (any shape, all arrays alike): the policy's
    ``log_prob`` and ``entropy`` and the critic's ``value`` now, against the rollout's
    ``old_log_prob`` and ``old_value``; advantages are normalised over the minibatch; the value
    loss is clipped around ``old_value`` when ``clip_value_loss``. Returns (loss, metrics)."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    policy_loss = -jnp.minimum(ratio * advantages, clipped_ratio * advantages).mean()
    value_loss = jnp.square(value - targets)
    if clip_value_loss:
        clipped = old_value + jnp.clip(value - old_value, -clip_coef, clip_coef)
        value_loss = jnp.maximum(value_loss, jnp.square(clipped - targets))
    value_loss = 0.5 * value_loss.mean()
    entropy = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    metrics = {
        "loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "clip_fraction": (jnp.abs(ratio - 1.0) > clip_coef).mean(),
    }
    return loss, metrics


class PPO:
    """Recurrent PPO over a gymnax-style env; actor and critic are ``Network``s (built on the same
    feature extractor and torso objects, they share one, with one carry)."""

    def __init__(self, cfg, env, env_params, actor, critic, actor_optimizer, critic_optimizer):
        self.cfg = cfg
        self.env = EpisodeStatistics(env)
        self.env_params = env_params
        self.action_space = env.action_space(env_params)
        self.shared = shares_torso(actor, critic)
        if self.shared:
            self.model = SharedActorCritic(
                actor.feature_extractor, actor.torso, actor.head, critic.head
            )
            self.optimizers = (actor_optimizer,)
        else:
            self.optimizers = (actor_optimizer, critic_optimizer)
        self.actor, self.critic = actor, critic

    # --- networks -----------------------------------------------------------------------------
    def initialize_carry(self, batch_size: int) -> Any:
        if self.shared:
            return self.model.initialize_carry(batch_size)
        return self.actor.initialize_carry(batch_size), self.critic.initialize_carry(batch_size)

    def forward(self, params, inputs: StepInput, carry):
        """Policy and value over sequences [E, T, ...] -> (carry, policy, value [E, T])."""
        if self.shared:
            carry, (policy, value) = self.model.apply(params[0], *inputs.network_args(carry))
            return carry, policy, value
        actor_carry, policy = self.actor.apply(params[0], *inputs.network_args(carry[0]))
        critic_carry, value = self.critic.apply(params[1], *inputs.network_args(carry[1]))
        return (actor_carry, critic_carry), policy, value

    def value(self, params, inputs: StepInput, carry) -> jax.Array:
        if self.shared:
            return self.forward(params, inputs, carry)[2]
        return self.critic.apply(params[1], *inputs.network_args(carry[1]))[1]

    def env_action(self, action: jax.Array) -> jax.Array:
        if isinstance(self.action_space, spaces.Discrete):
            return action
        return jnp.clip(action, self.action_space.low, self.action_space.high)

    # --- acting -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> tuple[jax.Array, PPOState]:
        key, env_key, init_key = jax.random.split(key, 3)
        observation, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(env_key, self.cfg.num_envs), self.env_params
        )
        inputs = StepInput.first(observation, self.action_space)
        carry = self.initialize_carry(self.cfg.num_envs)
        sequence = inputs.as_sequence()
        if self.shared:
            params = (self.model.init(init_key, *sequence.network_args(carry)),)
        else:
            actor_key, critic_key = jax.random.split(init_key)
            params = (
                self.actor.init(actor_key, *sequence.network_args(carry[0])),
                self.critic.init(critic_key, *sequence.network_args(carry[1])),
            )
        opt_states = tuple(opt.init(p) for opt, p in zip(self.optimizers, params, strict=True))
        state = PPOState(
            params=params,
            opt_states=opt_states,
            env_state=env_state,
            inputs=inputs,
            carry=carry,
            env_steps=jnp.zeros((), jnp.int32),
        )
        return key, state

    def _env_step(self, state: PPOState, key: jax.Array):
        act_key, env_key = jax.random.split(key)
        carry, policy, value = self.forward(state.params, state.inputs.as_sequence(), state.carry)
        action = policy.sample(seed=act_key)  # [E, 1, ...]
        log_prob = policy.log_prob(action)[:, 0]
        action = action[:, 0]
        executed = self.env_action(action)  # clipped: what the env gets is the next prev_action
        env_keys = jax.random.split(env_key, self.cfg.num_envs)
        observation, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(env_keys, state.env_state, executed, self.env_params)
        # A truncated episode bootstraps from its final observation, seen with the carry that the
        # episode had reached; the next step's observation already belongs to a new episode.
        final_inputs = StepInput(
            observation=info["final_observation"],
            reset=jnp.zeros_like(state.inputs.reset),
            prev_action=executed,
            prev_reward=reward,
        )
        final_value = self.value(state.params, final_inputs.as_sequence(), carry)[:, 0]
        step = Rollout(
            inputs=state.inputs,
            action=action,
            log_prob=log_prob,
            value=value[:, 0],
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_value=final_value,
        )
        done = jnp.logical_or(terminated, truncated)
        state = state.replace(
            env_state=env_state,
            inputs=StepInput.after(observation, done, executed, reward),
            carry=carry,
            env_steps=state.env_steps + self.cfg.num_envs,
        )
        return state, (step, info)

    def collect(self, state: PPOState, key: jax.Array):
        """A rollout of num_steps per env with the current policy.

        Returns (state, rollout [T, E, ...], info, advantages, targets); ``state.carry`` before the
        call is the carry that replays the rollout."""
        cfg = self.cfg
        step_keys = jax.random.split(key, cfg.num_steps)
        state, (rollout, info) = jax.lax.scan(self._env_step, state, step_keys)
        last_value = self.value(state.params, state.inputs.as_sequence(), state.carry)[:, 0]
        next_values = jnp.concatenate([rollout.value[1:], last_value[None]], axis=0)
        next_values = jnp.where(rollout.truncated, rollout.final_value, next_values)
        advantages, targets = generalized_advantage_estimate(
            rollout.reward,
            rollout.value,
            next_values,
            rollout.terminated,
            rollout.truncated,
            cfg.gamma,
            cfg.gae_lambda,
        )
        return state, rollout, info, advantages, targets

    # --- learning -----------------------------------------------------------------------------
    def _loss(self, params, batch: Rollout, carry, advantages, targets):
        """PPO loss over whole env sequences [E_mb, T], replayed from their rollout carry."""
        cfg = self.cfg
        _, policy, value = self.forward(params, batch.inputs, carry)
        return ppo_loss(
            log_prob=policy.log_prob(batch.action),
            entropy=policy.entropy(),
            value=value,
            old_log_prob=batch.log_prob,
            old_value=batch.value,
            advantages=advantages,
            targets=targets,
            clip_coef=cfg.clip_coef,
            clip_value_loss=cfg.clip_value_loss,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
        )

    def _update(self, train_state, minibatch):
        """One gradient update on a minibatch of whole env sequences and their rollout carry."""
        params, opt_states = train_state
        (sequences, advantages, targets), carry = minibatch
        grads, metrics = jax.grad(self._loss, has_aux=True)(
            params, sequences, carry, advantages, targets
        )
        updated = [
            opt.update(g, s, p)
            for opt, g, s, p in zip(self.optimizers, grads, opt_states, params, strict=True)
        ]
        params = tuple(optax.apply_updates(p, u) for p, (u, _) in zip(params, updated, strict=True))
        return (params, tuple(s for _, s in updated)), metrics

    def _round(self, state: PPOState, key: jax.Array):
        """One rollout of num_steps per env, then update_epochs x num_minibatches updates."""
        cfg = self.cfg
        rollout_carry = state.carry
        collect_key, epochs_key = jax.random.split(key)
        state, rollout, info, advantages, targets = self.collect(state, collect_key)
        # Env-major [E, T, ...] so a minibatch is a set of whole env sequences.
        batch = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (rollout, advantages, targets))

        def epoch(train_state, epoch_key):
            permutation = jax.random.permutation(epoch_key, cfg.num_envs)

            def split(x):  # [E, ...] -> [M, E / M, ...]
                x = jnp.take(x, permutation, axis=0)
                return x.reshape((cfg.num_minibatches, -1) + x.shape[1:])

            minibatches = jax.tree.map(split, (batch, rollout_carry))
            return jax.lax.scan(self._update, train_state, minibatches)

        epoch_keys = jax.random.split(epochs_key, cfg.update_epochs)
        (params, opt_states), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_states), epoch_keys
        )
        state = state.replace(params=params, opt_states=opt_states)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics = {**metrics, "finite": all_finite(metrics, params), **episode_metrics(info)}
        transitions = Transition(
            observation=rollout.inputs.observation, action=rollout.action, reward=rollout.reward,
            done=rollout.terminated | rollout.truncated, info=info, metrics={},
        )  # fmt: skip
        return state, transitions, metrics

    def train(self, key: jax.Array, state: PPOState, num_steps: int):
        """Train for ``num_steps`` env steps per seed: whole rounds of num_envs x num_steps.

        Returns (key, state, transitions): the last round's rollout ([num_steps, num_envs]) and
        one metrics row per round. Resumable: train(n1) then train(n2) equals train(n1 + n2)."""
        check_whole_rounds(num_steps, self.cfg.steps_per_round, "--num-envs x --num-steps")

        def one_round(carry, _):
            key, state = carry
            key, round_key = jax.random.split(key)
            state, transitions, metrics = self._round(state, round_key)
            return (key, state), (transitions, metrics)

        (key, state), (transitions, metrics) = jax.lax.scan(
            one_round, (key, state), None, length=num_steps // self.cfg.steps_per_round
        )
        last = jax.tree.map(lambda x: x[-1], transitions)
        return key, state, last.replace(metrics=metrics)

    def evaluate(self, key: jax.Array, state: PPOState, num_steps: int):
        """Greedy evaluation: eval_episodes fresh envs, the policy's mode, ``num_steps`` steps.
        Returns (key, episode_return [eval_episodes], finished [eval_episodes]) of each env's
        first episode; only finished episodes count."""
        key, eval_key = jax.random.split(key)

        def act(carry, inputs):
            carry, policy, _ = self.forward(state.params, inputs, carry)
            return carry, policy.mode()[:, 0]

        num_envs = self.cfg.eval_episodes
        carry = self.initialize_carry(num_envs)
        returns, finished = greedy_episode_returns(
            eval_key, self.env, self.env_params, act, carry, num_envs, num_steps, self.env_action
        )
        return key, returns, finished


def make_agent(cfg: PPOConfig, env, env_params, values=None) -> PPO:
    """Networks and optimizers from the config (with a sweep config's ``values`` in place of its
    fields inside the compiled run): the one place the architecture is chosen."""
    cfg = with_values(cfg, values or {})
    observation_shape = env.observation_space(env_params).shape
    action_space = env.action_space(env_params)
    discrete = isinstance(action_space, spaces.Discrete)
    num_actions = action_space.n if discrete else int(np.prod(action_space.shape))

    def feature_extractor() -> FeatureExtractor:
        return FeatureExtractor(
            observation_extractor=observation_extractor(observation_shape, cfg.hidden_size),
            action_extractor=MLP(features=(32,)) if cfg.use_prev_action else None,
            reward_extractor=MLP(features=(16,)) if cfg.use_prev_reward else None,
            done_extractor=MLP(features=(16,)) if cfg.use_reset_flag else None,
            num_actions=num_actions if discrete else None,
        )

    def torso() -> nn.Module:
        return make_torso(cfg.torso, cfg.hidden_size, cfg.num_layers, cfg.context_length)

    policy_head = heads.Categorical(num_actions) if discrete else heads.Gaussian(num_actions)
    actor_extractor, actor_torso = feature_extractor(), torso()
    if cfg.shared_torso:
        critic_extractor, critic_torso = actor_extractor, actor_torso
    else:
        critic_extractor, critic_torso = feature_extractor(), torso()
    actor = Network(actor_extractor, actor_torso, policy_head)
    critic = Network(critic_extractor, critic_torso, heads.VNetwork())
    gradient_steps = cfg.num_rounds * cfg.update_epochs * cfg.num_minibatches
    learning_rate = (
        optax.linear_schedule(cfg.learning_rate, 0.0, gradient_steps)
        if cfg.anneal_lr
        else cfg.learning_rate
    )

    def optimizer() -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(learning_rate, eps=1e-5)
        )

    return PPO(cfg, env, env_params, actor, critic, optimizer(), optimizer())


def start(agent: PPO, key: jax.Array):
    """One seed before training: its key and initial state."""
    return agent.init(key)


def train_periods(agent: PPO, carry, first_period, num_periods: int, progress=None):
    """``num_periods`` evaluation periods of one seed from ``carry`` (key, state): each trains for
    --eval-every env steps, then evaluates greedily. Returns (carry, (metrics [rounds],
    eval_return [periods], NaN where no evaluation episode finished))."""
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

    carry, (metrics, eval_return) = jax.lax.scan(
        period, carry, first_period + jnp.arange(num_periods)
    )
    return carry, (jax.tree.map(lambda x: x.reshape(-1), metrics), eval_return)


def evaluate_saved_run(cfg: PPOConfig, env=None, env_params=None) -> np.ndarray:
    """``--load``: rebuild the saved run's agent and env (``results.run_env``: pass a user-built
    env again), restore every run's parameters (each seed, or each config and seed of a sweep)
    and evaluate each on --eval-episodes fresh episodes; returns each run's mean return."""
    with results.user_errors():  # a wrong folder, a damaged file, an env it cannot rebuild
        saved_cfg, checkpoint = results.read_run(
            cfg.load, SCRIPT, PPOConfig, eval_episodes=cfg.eval_episodes
        )
        env, env_params, _ = results.run_env(saved_cfg.env_id, make, env, env_params, load=cfg.load)
        agent = make_agent(saved_cfg, env, env_params)
        sweep = parse_sweep(saved_cfg)
        _, keys, _ = sweep.inputs(cfg.seed)
        _, states = run_once(jax.vmap(agent.init), keys)
        states = states.replace(params=results.load_checkpoint(checkpoint, states.params))
    evaluate = jax.jit(jax.vmap(partial(agent.evaluate, num_steps=evaluation_steps(env_params))))
    _, returns, finished = evaluate(keys, states)
    return results.print_evaluation(f"greedy evaluation of {cfg.load}", returns, finished, sweep)


def run(cfg: PPOConfig, env=None, env_params=None):
    """Train (or --resume) on make(cfg.env_id) or a user's gymnax env: (run folder, summary)."""
    with results.user_errors():  # setup mistakes: one line naming the flag, before compiling
        if resume := cfg.resume:
            cfg = results.read_config(resume, "--resume", SCRIPT, PPOConfig)
        env, env_params, record = results.run_env(cfg.env_id, make, env, env_params, resume=resume)
        sweep = parse_sweep(cfg)
        check_divides_devices(sweep.num_runs, "--num-seeds x --sweep configs")
        agent_for = partial(make_agent, cfg, env, env_params)
        agent_for({})  # the model's own checks (e.g. the observation's shape), before compiling
        name = f"{SCRIPT}-{record['name']}-{cfg.torso}"
        config = results.config_dict(cfg, SCRIPT, record)
        run_dir = resume or results.new_run_dir(cfg.output_dir, name, config)
        checkpoints = Checkpoints(run_dir, cfg.checkpoint_every // cfg.eval_every, SCRIPT)
        if resume:
            checkpoints.check_resumable()
        tracker = open_tracker(
            cfg.track, run_dir, name, config, sweep.runs(),
            wandb_project=cfg.wandb_project, wandb_entity=cfg.wandb_entity,
        )  # fmt: skip
    progress = Progress(cfg.num_evaluations, sweep.num_runs, cfg.eval_every, tracker=tracker)
    announce_run(f"{SCRIPT}: {record['name']}, torso {cfg.torso}", sweep, cfg.training_steps)
    (_, _, (_, state)), (metrics, eval_return), timing = train_seeds(
        *swept(agent_for, start, train_periods, progress), sweep.inputs(cfg.seed),
        cfg.num_evaluations, checkpoints,
    )  # fmt: skip
    summary = results.write_run(
        run_dir, config, metrics, eval_return, state.params, timing,
        steps_per_round=cfg.steps_per_round, eval_every=cfg.eval_every, sweep=sweep,
    )  # fmt: skip
    checkpoints.remove()
    progress.close()
    return run_dir, summary


def main() -> None:
    cfg = tyro.cli(PPOConfig)
    results.check_saved_run_flags(cfg.load, cfg.resume)
    if cfg.load is not None:
        evaluate_saved_run(cfg)
    elif run(cfg)[1]["diverged"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
