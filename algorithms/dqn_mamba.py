"""Recurrent DQN with a Mamba torso: the whole run, every seed, in one jitted call (R2D2 style).

    python algorithms/dqn_mamba.py                                # Mamba on position-only CartPole
    python algorithms/dqn_mamba.py --torso mlp                    # its memoryless twin
    python algorithms/dqn_mamba.py --prioritised                  # prioritised sequence replay
    python algorithms/dqn_mamba.py --env-id RepeatPreviousEasy --total-timesteps 1000000
    python algorithms/dqn_mamba.py --load runs/<run>              # evaluate a saved run again

Recurrent details that decide whether memory works: every stored step keeps the carry the online
network acted from, so a replayed sequence may start anywhere and both the online and the target
network start it from that carry; the first --burn-in steps only refresh the carry (no gradient,
no loss); the reset flags travel with the sequence; n-step returns stop at termination and
bootstrap through truncation from the final observation, seen with the episode's own carry.
"""

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
import tyro
from flax import struct
from gymnax.environments import spaces

from memorax import replay, results
from memorax.buffers import (
    EpisodeBuffer,
    compute_importance_weights,
    make_episode_buffer,
    make_prioritised_episode_buffer,
    sequence_priority,
)
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

SCRIPT = "dqn_mamba"


@dataclass(frozen=True)
class DQNConfig(RunFlags):
    env_id: str = "CartPole-P-v1"
    """Environment id for memorax.environments.make (discrete actions only)."""
    torso: TorsoName = "mamba"
    """Memory model; mlp is the memoryless control."""
    hidden_size: int = 64
    """Width of the feature extractor and torso."""
    num_layers: int = 1
    """Torso depth."""
    num_envs: int = 16
    """Parallel environments per seed."""
    total_timesteps: int = 500_000
    """Env steps per seed for the whole run, --learning-starts included."""
    learning_starts: int = 10_000
    """Env steps of random actions that fill the buffer before training."""
    num_seeds: int = 4
    """Seeds trained at once in one compiled call (vmapped, sharded over devices)."""
    seed: int = 0
    """Base seed; seed i of the run uses key fold_in(key(seed), i)."""
    learning_rate: float = 1e-3
    """Adam step size (the start of the schedule when --anneal-lr)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to zero over the training updates; DQN's greedy
    policy oscillates late in training at a constant rate."""
    buffer_size: int = 50_000
    """Replay capacity in env steps (all envs together); each keeps its torso carry."""
    batch_size: int = 16
    """Sequences per gradient update."""
    sequence_length: int = 32
    """Trained steps per replayed sequence (burn-in and n-step lookahead come on top)."""
    burn_in: int = 8
    """Steps replayed before the trained ones only to refresh the stored carry (no gradient)."""
    n_step: int = 3
    """Steps of reward in each target before bootstrapping."""
    gamma: float = 0.99
    """Discount factor."""
    train_frequency: int = 5
    """Steps of every env per round: a round is num_envs x this many env steps, then
    --gradient-steps updates."""
    gradient_steps: int = 1
    """Gradient updates per round."""
    target_update_period: int = 50
    """Gradient updates between target-network updates."""
    tau: float = 1.0
    """Target update target <- tau * online + (1 - tau) * target; 1.0 is a hard copy."""
    epsilon_start: float = 1.0
    """Exploration rate at the start of training."""
    epsilon_end: float = 0.05
    """Exploration rate at the end of the decay."""
    exploration_fraction: float = 0.5
    """Fraction of --total-timesteps over which epsilon decays linearly."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    prioritised: bool = False
    """Prioritised sequence replay (R2D2's priority mix) with importance weights."""
    priority_exponent: float = 0.6
    """Alpha: sampling probability is proportional to priority ** alpha."""
    importance_exponent: float = 0.4
    """Beta of the importance weights at the start; it anneals linearly to 1."""
    priority_eta: float = 0.9
    """Sequence priority = eta * max |TD| + (1 - eta) * mean |TD|."""
    use_prev_action: bool = False
    """Feed the previous action (zero at episode starts) to the feature extractor."""
    use_prev_reward: bool = False
    """Feed the previous reward (zero at episode starts) to the feature extractor."""
    context_length: int = 64
    """Steps of memory of the attention torsos (attention*, gtrxl): their key/value cache."""
    eval_every: int = 10_000
    """Env steps per seed between greedy evaluations; must divide the training steps."""
    eval_episodes: int = 32
    """Greedy episodes per evaluation (one per eval env)."""

    def __post_init__(self) -> None:
        check_finite(vars(self))
        check_counts(vars(self), zero_ok=("burn_in",))
        check_torso(self.torso, self.hidden_size, self.num_layers)
        check_env_id(self.env_id, "--env-id")
        replay.check_replay_schedule(
            num_envs=self.num_envs, total_timesteps=self.total_timesteps,
            learning_starts=self.learning_starts, eval_every=self.eval_every,
            buffer_size=self.buffer_size, steps_per_round=self.steps_per_round,
            round_flags="--num-envs x --train-frequency", replay_length=self.replay_length,
            replay_flags="--burn-in + --sequence-length + --n-step",
        )  # fmt: skip
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("--gamma and --tau must lie in (0, 1]")
        if not 0.0 <= self.epsilon_end <= 1.0 or not 0.0 <= self.epsilon_start <= 1.0:
            raise ValueError("--epsilon-start and --epsilon-end must lie in [0, 1]")
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError("--exploration-fraction must lie in (0, 1]")
        if not 0.0 <= self.priority_eta <= 1.0 or not 0.0 <= self.importance_exponent <= 1.0:
            raise ValueError("--priority-eta and --importance-exponent must lie in [0, 1]")
        if self.learning_rate <= 0 or self.max_grad_norm <= 0 or self.priority_exponent < 0:
            raise ValueError(
                "--learning-rate and --max-grad-norm must be positive, --priority-exponent >= 0"
            )
        self.check_run_flags(self.eval_every, self.training_steps)

    @property
    def steps_per_round(self) -> int:
        """Env steps per round, all envs together."""
        return self.num_envs * self.train_frequency

    @property
    def training_steps(self) -> int:
        return self.total_timesteps - self.learning_starts

    @property
    def replay_length(self) -> int:
        return self.burn_in + self.sequence_length + self.n_step

    @property
    def num_evaluations(self) -> int:
        return self.training_steps // self.eval_every


@struct.dataclass
class Experience:
    """One stored env step: what the agent saw, did and got, and the carry it acted from."""

    inputs: StepInput  # what the agent acted on
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_observation: jax.Array  # the episode's last observation where truncated
    carry: Any  # online torso carry before this step (before its reset)


@struct.dataclass
class DQNState:
    """The whole training state of one seed."""

    params: Any
    target_params: Any
    opt_state: Any
    buffer_state: Any
    env_state: Any
    inputs: StepInput  # [E, ...] what the next step acts on
    carry: Any  # online torso carry before the next step
    env_steps: jax.Array  # env steps per seed so far, warmup included
    updates: jax.Array  # gradient updates so far


def double_q_value(q_online: jax.Array, q_target: jax.Array) -> jax.Array:
    """Double DQN's bootstrap value: the target network's value of the online network's greedy
    action (van Hasselt et al. 2016). [..., A] -> [...]; no gradient."""
    best = jnp.argmax(jax.lax.stop_gradient(q_online), axis=-1)
    return jnp.take_along_axis(q_target, best[..., None], axis=-1)[..., 0]


def dqn_loss(q_taken, targets, valid, weights):
    """Importance-weighted TD loss over sequences [B, T]: each sequence's mean of
    0.5 (Q(s, a) - target)^2 over its valid steps, weighted by ``weights`` [B] and averaged.
    Gradients stop at the targets. Returns (loss, td_error [B, T])."""
    td_error = q_taken - jax.lax.stop_gradient(targets)
    per_step = 0.5 * jnp.square(td_error) * valid
    per_sequence = per_step.sum(1) / jnp.maximum(valid.sum(1), 1)
    return (weights * per_sequence).mean(), td_error


class DQN:
    """Recurrent double DQN over a gymnax-style env with discrete actions.

    ``q_network`` is a ``Network`` with a ``DiscreteQNetwork`` head; ``buffer`` an episode buffer
    from ``memorax.buffers`` whose ``sample_sequence_length`` is burn-in + sequence length +
    n-step, sampling from any step (``sequence_starts="any"``); ``epsilon_schedule`` maps env steps
    to the exploration rate.
    """

    def __init__(self, cfg, env, env_params, q_network, optimizer, buffer, epsilon_schedule):
        self.cfg = cfg
        self.env = EpisodeStatistics(env)
        self.env_params = env_params
        self.action_space = env.action_space(env_params)
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(f"--env-id {cfg.env_id}: DQN needs discrete actions")
        self.q_network = q_network
        self.optimizer = optimizer
        replay.check_replay_buffer(
            buffer, cfg.replay_length, cfg.num_envs, "--burn-in + --sequence-length + --n-step"
        )
        self.buffer: EpisodeBuffer = buffer
        # The buffer, not a flag, says whether replay is prioritised.
        self.prioritised = buffer.priority_exponent is not None
        self.epsilon_schedule = epsilon_schedule

    def q_values(self, params, inputs: StepInput, carry):
        """Q-values over sequences [E, T, ...] -> (carry, q [E, T, num_actions])."""
        return self.q_network.apply(params, *inputs.network_args(carry))

    # --- acting -------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> tuple[jax.Array, DQNState]:
        key, env_key, init_key = jax.random.split(key, 3)
        num_envs = self.cfg.num_envs
        observation, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(env_key, num_envs), self.env_params
        )
        inputs = StepInput.first(observation, self.action_space)
        carry = self.q_network.initialize_carry(num_envs)
        params = self.q_network.init(init_key, *inputs.as_sequence().network_args(carry))
        first = jax.tree.map(lambda x: x[0], inputs)
        item = Experience(
            inputs=first,
            action=first.prev_action,
            reward=first.prev_reward,
            terminated=first.reset,
            truncated=first.reset,
            final_observation=first.observation,
            carry=jax.tree.map(lambda x: x[0], carry),
        )
        state = DQNState(
            params=params,
            target_params=params,
            opt_state=self.optimizer.init(params),
            buffer_state=self.buffer.init(item),
            env_state=env_state,
            inputs=inputs,
            carry=carry,
            env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
        )
        return key, state

    def _env_step(self, state: DQNState, key: jax.Array, epsilon: jax.Array):
        """One epsilon-greedy step of every env; the step goes into the buffer."""
        explore_key, action_key, env_key = jax.random.split(key, 3)
        carry, q = self.q_values(state.params, state.inputs.as_sequence(), state.carry)
        num_envs = self.cfg.num_envs
        random_action = jax.random.randint(action_key, (num_envs,), 0, self.action_space.n)
        explore = jax.random.uniform(explore_key, (num_envs,)) < epsilon
        action = jnp.where(explore, random_action, jnp.argmax(q[:, 0], axis=-1))
        observation, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(env_key, num_envs), state.env_state, action, self.env_params)
        step = Experience(
            inputs=state.inputs,
            action=action,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_observation=info["final_observation"],
            carry=state.carry,
        )
        add = jax.tree.map(lambda x: x[:, None], (step, state.inputs.reset))
        done = jnp.logical_or(terminated, truncated)
        state = state.replace(
            buffer_state=self.buffer.add(state.buffer_state, *add),
            env_state=env_state,
            inputs=StepInput.after(observation, done, action, reward),
            carry=carry,
            env_steps=state.env_steps + num_envs,
        )
        return state, (step, info)

    def _act(self, state: DQNState, key: jax.Array, epsilon: jax.Array, num_steps: int):
        def step(state, key):
            return self._env_step(state, key, epsilon)

        return jax.lax.scan(step, state, jax.random.split(key, num_steps))

    def warmup(self, key: jax.Array, state: DQNState, num_steps: int):
        """Fill the buffer with ``num_steps`` env steps per seed of uniformly random actions."""
        key, act_key = jax.random.split(key)
        state, _ = self._act(state, act_key, jnp.float32(1.0), num_steps // self.cfg.num_envs)
        return key, state

    # --- learning -----------------------------------------------------------------------------
    def _loss(self, params, target_params, sample, weights):
        """Double-DQN n-step loss over replayed sequences [B, L], each started from its stored
        carry by both networks, the first burn_in steps without gradient."""
        cfg = self.cfg
        burn, trained = cfg.burn_in, cfg.sequence_length
        sequence = sample.experience
        start = jax.tree.map(lambda x: x[:, 0], sequence.carry)
        # One replay serves both the continuing episodes and one truncation's bootstrap.
        inputs, position, replayed = replay.insert_final_observation(sequence, burn)

        # Burn-in only refreshes the stored carry: no gradient reaches it or flows through it.
        carry, q_burn = start, None
        if burn:
            frozen = jax.lax.stop_gradient(params)
            carry, q_burn = self.q_values(
                frozen, jax.tree.map(lambda x: x[:, :burn], inputs), start
            )
            carry = jax.lax.stop_gradient(carry)
        _, q = self.q_values(params, jax.tree.map(lambda x: x[:, burn:], inputs), carry)
        q = q if q_burn is None else jnp.concatenate([q_burn, q], axis=1)  # [B, L + 1, A]
        _, q_target = self.q_values(target_params, inputs, start)
        value = double_q_value(q, q_target)  # [B, L + 1]
        targets, valid = replay.n_step_targets(
            sequence.reward,
            sequence.terminated,
            sequence.truncated,
            jnp.take_along_axis(value, position, axis=1),
            value[:, :-1],
            replayed,
            cfg.gamma,
            cfg.n_step,
        )
        targets, valid = targets[:, burn:], valid[:, burn:]  # [B, sequence_length]
        taken = sequence.action[:, burn : burn + trained]
        q = jnp.take_along_axis(q, position[:, burn : burn + trained, None], axis=1)
        q_taken = jnp.take_along_axis(q, taken[..., None], axis=-1)[..., 0]
        loss, td_error = dqn_loss(q_taken, targets, valid, weights)
        metrics = {"loss": loss, "q": q_taken.mean(), "valid_fraction": valid.mean()}
        return loss, (td_error, valid, metrics)

    def _update(self, state: DQNState, key: jax.Array):
        """One gradient update on a sampled batch of sequences, then the target update."""
        cfg = self.cfg
        sample = self.buffer.sample(state.buffer_state, key)
        if self.prioritised:
            progress = (state.env_steps - cfg.learning_starts) / cfg.training_steps
            beta = cfg.importance_exponent + (1.0 - cfg.importance_exponent) * progress
            weights = compute_importance_weights(sample.probabilities, sample.num_starts, beta)
        else:
            weights = jnp.ones_like(sample.probabilities)
        grads, (td_error, valid, metrics) = jax.grad(self._loss, has_aux=True)(
            state.params, state.target_params, sample, weights
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        buffer_state = state.buffer_state
        if self.prioritised:
            priority = sequence_priority(td_error, cfg.priority_eta, valid) + 1e-6
            buffer_state = self.buffer.set_priorities(buffer_state, sample.indices, priority)
        updates_done = state.updates + 1
        target_params = jax.lax.cond(
            updates_done % cfg.target_update_period == 0,
            lambda: optax.incremental_update(params, state.target_params, cfg.tau),
            lambda: state.target_params,
        )
        state = state.replace(
            params=params,
            target_params=target_params,
            opt_state=opt_state,
            buffer_state=buffer_state,
            updates=updates_done,
        )
        return state, metrics

    def _round(self, state: DQNState, key: jax.Array):
        """train_frequency steps of every env, then gradient_steps updates."""
        cfg = self.cfg
        act_key, update_key = jax.random.split(key)
        epsilon = self.epsilon_schedule(state.env_steps)
        state, (steps, info) = self._act(state, act_key, epsilon, cfg.train_frequency)
        state, metrics = jax.lax.scan(
            self._update, state, jax.random.split(update_key, cfg.gradient_steps)
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        finite = all_finite(metrics, state.params) & ~state.buffer_state.nonfinite_priority
        metrics = {**metrics, "epsilon": epsilon, "finite": finite, **episode_metrics(info)}
        transitions = Transition(
            observation=steps.inputs.observation, action=steps.action, reward=steps.reward,
            done=steps.terminated | steps.truncated, info=info, metrics={},
        )  # fmt: skip
        return state, transitions, metrics

    def train(self, key: jax.Array, state: DQNState, num_steps: int):
        """Train for ``num_steps`` env steps per seed: whole rounds of num_envs x train_frequency.

        Returns (key, state, transitions): the last round's steps ([train_frequency, num_envs])
        and one metrics row per round. Resumable: train(n1) then train(n2) equals
        train(n1 + n2)."""
        check_whole_rounds(num_steps, self.cfg.steps_per_round, "--num-envs x --train-frequency")

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

    def evaluate(self, key: jax.Array, state: DQNState, num_steps: int):
        """Greedy evaluation on eval_episodes fresh envs; returns (key, episode_return,
        finished), each [eval_episodes], of each env's first episode."""
        key, eval_key = jax.random.split(key)

        def act(carry, inputs):
            carry, q = self.q_values(state.params, inputs, carry)
            return carry, jnp.argmax(q[:, 0], axis=-1)

        num_envs = self.cfg.eval_episodes
        carry = self.q_network.initialize_carry(num_envs)
        returns, finished = greedy_episode_returns(
            eval_key, self.env, self.env_params, act, carry, num_envs, num_steps
        )
        return key, returns, finished


def make_agent(cfg: DQNConfig, env, env_params, values=None) -> DQN:
    """Network, optimizer, buffer and schedule from the config (with a sweep config's ``values``
    in place of its fields inside the compiled run): the one place they are chosen."""
    cfg = with_values(cfg, values or {})
    observation_shape = env.observation_space(env_params).shape
    action_space = env.action_space(env_params)
    num_actions = getattr(action_space, "n", None)
    if num_actions is None:
        raise ValueError(f"--env-id {cfg.env_id} has continuous actions; DQN needs discrete ones")
    q_network = Network(
        FeatureExtractor(
            observation_extractor=observation_extractor(observation_shape, cfg.hidden_size),
            action_extractor=MLP(features=(32,)) if cfg.use_prev_action else None,
            reward_extractor=MLP(features=(16,)) if cfg.use_prev_reward else None,
            num_actions=num_actions,
        ),
        make_torso(cfg.torso, cfg.hidden_size, cfg.num_layers, cfg.context_length),
        heads.DiscreteQNetwork(num_actions, features=(cfg.hidden_size,)),
    )
    updates = cfg.training_steps // cfg.steps_per_round * cfg.gradient_steps
    learning_rate = (
        optax.linear_schedule(cfg.learning_rate, 0.0, updates)
        if cfg.anneal_lr
        else cfg.learning_rate
    )
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(learning_rate))
    sizes = dict(
        max_length=cfg.buffer_size, min_length=cfg.learning_starts,
        sample_batch_size=cfg.batch_size, sample_sequence_length=cfg.replay_length,
        add_batch_size=cfg.num_envs, sequence_starts="any",
    )  # fmt: skip
    if cfg.prioritised:
        buffer = make_prioritised_episode_buffer(**sizes, priority_exponent=cfg.priority_exponent)
    else:
        buffer = make_episode_buffer(**sizes)
    decay_steps = jnp.maximum(jnp.floor(cfg.exploration_fraction * cfg.total_timesteps), 1)

    def epsilon_schedule(env_steps):  # optax.linear_schedule's, with a length that can be swept
        count = jnp.clip(env_steps - cfg.learning_starts, 0, decay_steps)
        return (cfg.epsilon_start - cfg.epsilon_end) * (1 - count / decay_steps) + cfg.epsilon_end

    return DQN(cfg, env, env_params, q_network, optimizer, buffer, epsilon_schedule)


def start(agent: DQN, key: jax.Array):
    """One seed before training: its key and state after --learning-starts random steps."""
    key, state = agent.init(key)
    return agent.warmup(key, state, agent.cfg.learning_starts)


def train_periods(agent: DQN, carry, first_period, num_periods: int, progress=None):
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

    carry, (metrics, eval_return) = jax.lax.scan(
        period, carry, first_period + jnp.arange(num_periods)
    )
    return carry, (jax.tree.map(lambda x: x.reshape(-1), metrics), eval_return)


def evaluate_saved_run(cfg: DQNConfig, env=None, env_params=None):
    """``--load``: rebuild the saved run's agent and env (``results.run_env``: pass a user-built
    env again), restore every run's parameters (each seed, or each config and seed of a sweep)
    and evaluate each on --eval-episodes fresh episodes; returns each run's mean return."""
    with results.user_errors():  # a wrong folder, a damaged file, an env it cannot rebuild
        saved_cfg, checkpoint = results.read_run(
            cfg.load, SCRIPT, DQNConfig, eval_episodes=cfg.eval_episodes
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


def run(cfg: DQNConfig, env=None, env_params=None):
    """Train (or --resume) on make(cfg.env_id) or a user's gymnax env: (run folder, summary)."""
    with results.user_errors():  # setup mistakes: one line naming the flag, before compiling
        if resume := cfg.resume:
            cfg = results.read_config(resume, "--resume", SCRIPT, DQNConfig)
        env, env_params, record = results.run_env(cfg.env_id, make, env, env_params, resume=resume)
        sweep = parse_sweep(cfg)
        check_divides_devices(sweep.num_runs, "--num-seeds x --sweep configs")
        agent_for = partial(make_agent, cfg, env, env_params)
        agent_for({})  # the model's own checks (e.g. the observation's shape), before compiling
        name, config = (
            f"{SCRIPT}-{record['name']}-{cfg.torso}{'-prioritised' if cfg.prioritised else ''}",
            results.config_dict(cfg, SCRIPT, record),
        )
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
    announce_run(f"{SCRIPT}: {record['name']}, torso {cfg.torso}", sweep, cfg.total_timesteps)
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
    cfg = tyro.cli(DQNConfig)
    results.check_saved_run_flags(cfg.load, cfg.resume)
    if cfg.load is not None:
        evaluate_saved_run(cfg)
    elif run(cfg)[1]["diverged"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
