"""Recurrent PPO: the whole training run, every seed, in one jitted call (PureJaxRL style).

    python algorithms/ppo_rnn.py                                  # GRU on position-only CartPole
    python algorithms/ppo_rnn.py --torso mlp                      # its memoryless twin
    python algorithms/ppo_rnn.py --env-id RepeatPreviousEasy --total-timesteps 2000000
    python algorithms/ppo_rnn.py --load runs/<run>                # evaluate a saved run again

Recurrent details that decide whether memory works: every rollout stores the carry it started
from; minibatches are whole env sequences replayed from that carry with the rollout's reset flags,
so training sees exactly the function that acted; the previous action and reward inputs are zeroed
at episode starts; GAE bootstraps through truncation from the value of the final observation and
never through termination.
"""

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import struct
from gymnax.environments import spaces

from memorax.environments import EpisodeStatistics, make, registered_envs
from memorax.experiment import (
    Progress,
    check_divides_devices,
    evaluate_saved_run,
    run_seeds,
    seed_keys,
    train_in_rounds,
    train_with_evaluations,
)
from memorax.networks import MLP, FeatureExtractor, Network, SharedActorCritic, heads, shares_torso
from memorax.networks.torsos import TorsoName, check_torso, make_torso
from memorax.results import write_run
from memorax.returns import generalized_advantage_estimate
from memorax.rollout import (
    Transition,
    evaluation_steps,
    greedy_episode_returns,
    next_step_inputs,
    zero_action,
)


@dataclass(frozen=True)
class PPOConfig:
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
    """Steps per env per rollout; one update trains on num_envs x num_steps steps."""
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
    context_length: int = 64
    """Steps of memory of --torso attention (its key/value cache)."""
    eval_every: int = 10
    """Updates between greedy evaluations; must divide the number of updates."""
    eval_episodes: int = 32
    """Greedy episodes per evaluation (one per eval env)."""
    output_dir: str = "runs"
    """Folder for results: config, curves, summary, plot and checkpoint of each run."""
    load: str | None = None
    """A run folder to load (its config and checkpoint) and evaluate again instead of training."""

    def __post_init__(self) -> None:
        check_torso(self.torso, self.hidden_size, self.num_layers)
        if self.env_id not in registered_envs():
            raise ValueError(
                f"--env-id {self.env_id!r} is unknown; valid ids: {', '.join(registered_envs())}"
            )
        for flag in (
            "num_envs",
            "num_steps",
            "total_timesteps",
            "num_seeds",
            "update_epochs",
            "num_minibatches",
            "eval_every",
            "eval_episodes",
            "context_length",
        ):
            if getattr(self, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"--num-envs ({self.num_envs}) must be divisible by --num-minibatches "
                f"({self.num_minibatches}): minibatches are whole env sequences"
            )
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"--total-timesteps ({self.total_timesteps}) is less than one update of "
                f"--num-envs x --num-steps = {self.batch_size} steps"
            )
        if self.num_updates % self.eval_every:
            divisors = [d for d in range(1, self.num_updates + 1) if self.num_updates % d == 0]
            raise ValueError(
                f"--eval-every ({self.eval_every}) must divide the {self.num_updates} updates of "
                f"--total-timesteps {self.total_timesteps} / ({self.batch_size} steps per update)"
                f"; choose one of {divisors[-8:]} or change --total-timesteps"
            )
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ValueError("--gamma must lie in (0, 1] and --gae-lambda in [0, 1]")
        if self.learning_rate <= 0 or self.clip_coef <= 0 or self.max_grad_norm <= 0:
            raise ValueError("--learning-rate, --clip-coef and --max-grad-norm must be positive")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def num_evaluations(self) -> int:
        return self.num_updates // self.eval_every


@struct.dataclass
class PPOState:
    """The whole training state of one seed."""

    params: tuple  # (shared,) with a shared torso, else (actor, critic)
    opt_states: tuple  # one optimizer state per entry of params
    env_state: Any
    observation: jax.Array  # [E, ...] the observation the next step acts on
    reset: jax.Array  # [E] the next step is the first of an episode
    prev_action: jax.Array  # [E, ...] zero at episode starts
    prev_reward: jax.Array  # [E]
    carry: Any  # torso carry (or (actor, critic) carries) before the next step
    env_steps: jax.Array  # env steps taken per env-batch so far


def acting_inputs(state: PPOState) -> tuple:
    """The next step's network inputs as one-step sequences: (observation, reset, carry,
    previous action, previous reward), each [E, 1, ...] but the carry."""
    return (
        state.observation[:, None],
        state.reset[:, None],
        state.carry,
        state.prev_action[:, None],
        state.prev_reward[:, None],
    )


@struct.dataclass
class Rollout:
    """What one rollout keeps for the update, time-major [T, E, ...]."""

    observation: jax.Array
    reset: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_value: jax.Array  # value of the final observation; used where truncated


class PPO:
    """Recurrent PPO over a gymnax-style env; actor and critic are ``Network``s.

    ``train`` returns the last rollout as a ``Transition`` ([num_steps, num_envs] leaves), with
    ``info["metrics"]`` holding one row per update of that call ([num_updates] leaves), so memory
    stays bounded however many steps a call trains for.
    """

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

    def forward(self, params, observation, reset, carry, prev_action, prev_reward):
        """Policy and value over sequences [E, T, ...] -> (carry, policy, value [E, T])."""
        if self.shared:
            carry, (policy, value) = self.model.apply(
                params[0], observation, reset, carry, prev_action, prev_reward
            )
            return carry, policy, value
        actor_carry, policy = self.actor.apply(
            params[0], observation, reset, carry[0], prev_action, prev_reward
        )
        critic_carry, value = self.critic.apply(
            params[1], observation, reset, carry[1], prev_action, prev_reward
        )
        return (actor_carry, critic_carry), policy, value

    def value(self, params, observation, reset, carry, prev_action, prev_reward) -> jax.Array:
        if self.shared:
            return self.forward(params, observation, reset, carry, prev_action, prev_reward)[2]
        _, value = self.critic.apply(
            params[1], observation, reset, carry[1], prev_action, prev_reward
        )
        return value

    def env_action(self, action: jax.Array) -> jax.Array:
        if isinstance(self.action_space, spaces.Discrete):
            return action
        return jnp.clip(action, self.action_space.low, self.action_space.high)

    # --- the algorithm ------------------------------------------------------------------------
    def init(self, key: jax.Array) -> tuple[jax.Array, PPOState]:
        key, env_key, init_key = jax.random.split(key, 3)
        num_envs = self.cfg.num_envs
        observation, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(env_key, num_envs), self.env_params
        )
        reset = jnp.ones((num_envs,), bool)
        prev_action = zero_action(self.action_space, num_envs)
        prev_reward = jnp.zeros((num_envs,))
        carry = self.initialize_carry(num_envs)
        sequence = (
            observation[:, None],
            reset[:, None],
            prev_action[:, None],
            prev_reward[:, None],
        )
        if self.shared:
            params = (self.model.init(init_key, sequence[0], sequence[1], carry, *sequence[2:]),)
        else:
            actor_key, critic_key = jax.random.split(init_key)
            params = (
                self.actor.init(actor_key, sequence[0], sequence[1], carry[0], *sequence[2:]),
                self.critic.init(critic_key, sequence[0], sequence[1], carry[1], *sequence[2:]),
            )
        opt_states = tuple(opt.init(p) for opt, p in zip(self.optimizers, params, strict=True))
        state = PPOState(
            params,
            opt_states,
            env_state,
            observation,
            reset,
            prev_action,
            prev_reward,
            carry,
            jnp.zeros((), jnp.int32),
        )
        return key, state

    def warmup(self, key: jax.Array, state: PPOState, num_steps: int) -> tuple[jax.Array, PPOState]:
        """On-policy PPO has no buffer to fill: a no-op, kept for the shared algorithm API."""
        return key, state

    def _env_step(self, state: PPOState, key: jax.Array):
        act_key, env_key = jax.random.split(key)
        carry, policy, value = self.forward(state.params, *acting_inputs(state))
        action = policy.sample(seed=act_key)  # [E, 1, ...]
        log_prob = policy.log_prob(action)[:, 0]
        action = action[:, 0]
        observation, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(
            jax.random.split(env_key, self.cfg.num_envs),
            state.env_state,
            self.env_action(action),
            self.env_params,
        )
        # A truncated episode bootstraps from its final observation, seen with the carry that the
        # episode had reached; the next step's observation already belongs to a new episode.
        final_value = self.value(
            state.params,
            info["final_observation"][:, None],
            jnp.zeros_like(state.reset)[:, None],
            carry,
            action[:, None],
            reward[:, None],
        )[:, 0]
        done = jnp.logical_or(terminated, truncated)
        prev_action, prev_reward = next_step_inputs(done, action, reward)
        step = Rollout(
            state.observation,
            state.reset,
            state.prev_action,
            state.prev_reward,
            action,
            log_prob,
            value[:, 0],
            reward,
            terminated,
            truncated,
            final_value,
        )
        state = state.replace(
            env_state=env_state,
            observation=observation,
            reset=done,
            prev_action=prev_action,
            prev_reward=prev_reward,
            carry=carry,
        )
        return state, (step, info)

    def _loss(self, params, batch: Rollout, carry, advantages, targets):
        """PPO loss over whole env sequences [E_mb, T], replayed from their rollout carry."""
        cfg = self.cfg
        _, policy, value = self.forward(
            params, batch.observation, batch.reset, carry, batch.prev_action, batch.prev_reward
        )
        log_prob = policy.log_prob(batch.action)
        log_ratio = log_prob - batch.log_prob
        ratio = jnp.exp(log_ratio)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        clipped_ratio = jnp.clip(ratio, 1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
        policy_loss = -jnp.minimum(ratio * advantages, clipped_ratio * advantages).mean()
        value_loss = jnp.square(value - targets)
        if cfg.clip_value_loss:
            clipped = batch.value + jnp.clip(value - batch.value, -cfg.clip_coef, cfg.clip_coef)
            value_loss = jnp.maximum(value_loss, jnp.square(clipped - targets))
        value_loss = 0.5 * value_loss.mean()
        entropy = policy.entropy().mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        metrics = {
            "loss": loss,
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip_fraction": (jnp.abs(ratio - 1.0) > cfg.clip_coef).mean(),
        }
        return loss, metrics

    def collect(self, state: PPOState, key: jax.Array):
        """A rollout of num_steps per env with the current policy.

        Returns (state, rollout [T, E, ...], info, advantages, targets); ``state.carry`` before the
        call is the carry that replays the rollout."""
        cfg = self.cfg
        step_keys = jax.random.split(key, cfg.num_steps)
        state, (rollout, info) = jax.lax.scan(self._env_step, state, step_keys)
        last_value = self.value(state.params, *acting_inputs(state))[:, 0]
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

    def _update(self, state: PPOState, key: jax.Array):
        """One rollout of num_steps per env, then update_epochs x num_minibatches updates."""
        cfg = self.cfg
        rollout_carry = state.carry
        collect_key, epochs_key = jax.random.split(key)
        state, rollout, info, advantages, targets = self.collect(state, collect_key)
        # Env-major [E, T, ...] so a minibatch is a set of whole env sequences.
        batch = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (rollout, advantages, targets))

        def minibatch_step(train_state, minibatch):
            params, opt_states = train_state
            (sequences, advantages, targets), carry = minibatch
            grads, metrics = jax.grad(self._loss, has_aux=True)(
                params, sequences, carry, advantages, targets
            )
            updated = [
                opt.update(g, s, p)
                for opt, g, s, p in zip(self.optimizers, grads, opt_states, params, strict=True)
            ]
            params = tuple(
                optax.apply_updates(p, u) for p, (u, _) in zip(params, updated, strict=True)
            )
            return (params, tuple(s for _, s in updated)), metrics

        def epoch(train_state, epoch_key):
            permutation = jax.random.permutation(epoch_key, cfg.num_envs)

            def split(x):  # [E, ...] -> [M, E / M, ...]
                x = jnp.take(x, permutation, axis=0)
                return x.reshape((cfg.num_minibatches, -1) + x.shape[1:])

            minibatches = jax.tree.map(split, (batch, rollout_carry))
            return jax.lax.scan(minibatch_step, train_state, minibatches)

        epoch_keys = jax.random.split(epochs_key, cfg.update_epochs)
        (params, opt_states), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_states), epoch_keys
        )
        state = state.replace(
            params=params, opt_states=opt_states, env_steps=state.env_steps + cfg.batch_size
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        ended = info["returned_episode"]
        metrics["episodes"] = ended.sum()
        metrics["episode_return"] = jnp.where(
            ended.any(), (info["returned_episode_returns"] * ended).sum() / ended.sum(), jnp.nan
        )
        transitions = Transition(
            rollout.observation,
            rollout.action,
            rollout.reward,
            jnp.logical_or(rollout.terminated, rollout.truncated),
            info,
        )
        return state, (transitions, metrics)

    def train(self, key: jax.Array, state: PPOState, num_steps: int):
        """Train for ``num_steps`` env steps per seed (a multiple of num_envs x num_steps).

        Resumable: train(n1) then train(n2) gives the same state as train(n1 + n2)."""
        return train_in_rounds(
            self._update, key, state, num_steps, self.cfg.batch_size, "--num-envs x --num-steps"
        )

    def evaluate(self, key: jax.Array, state: PPOState, num_steps: int):
        """Greedy evaluation: eval_episodes fresh envs, the policy's mode, ``num_steps`` steps.
        Returns (key, episode_return [eval_episodes], finished [eval_episodes]) of each env's
        first episode; only finished episodes count."""
        key, eval_key = jax.random.split(key)

        def act(carry, observation, reset, prev_action, prev_reward):
            carry, policy, _ = self.forward(
                state.params, observation, reset, carry, prev_action, prev_reward
            )
            return carry, policy.mode()[:, 0]

        num_envs = self.cfg.eval_episodes
        returns, finished = greedy_episode_returns(
            eval_key, self.env, self.env_params, act, self.initialize_carry(num_envs), num_envs,
            num_steps, self.env_action,
        )  # fmt: skip
        return key, returns, finished


def make_agent(cfg: PPOConfig, env, env_params) -> PPO:
    """Networks and optimizers from the config: the one place the architecture is chosen."""
    action_space = env.action_space(env_params)
    discrete = isinstance(action_space, spaces.Discrete)
    num_actions = action_space.n if discrete else int(np.prod(action_space.shape))

    def feature_extractor() -> FeatureExtractor:
        return FeatureExtractor(
            observation_extractor=MLP(features=(cfg.hidden_size,)),
            action_extractor=MLP(features=(32,)) if cfg.use_prev_action else None,
            reward_extractor=MLP(features=(16,)) if cfg.use_prev_reward else None,
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
    gradient_steps = cfg.num_updates * cfg.update_epochs * cfg.num_minibatches
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


def main() -> None:
    cfg = tyro.cli(PPOConfig)
    if cfg.load is not None:
        evaluate_saved_run(cfg.load, PPOConfig, make_agent, cfg.seed, cfg.eval_episodes)
        return
    check_divides_devices(cfg.num_seeds)
    env, env_params = make(cfg.env_id)
    agent = make_agent(cfg, env, env_params)
    steps_per_chunk = cfg.eval_every * cfg.batch_size
    progress = Progress(cfg.num_evaluations, cfg.num_seeds, steps_per_chunk)
    run = train_with_evaluations(
        agent, 0, steps_per_chunk, cfg.num_evaluations, evaluation_steps(env_params), progress
    )
    print(
        f"ppo_rnn: {cfg.env_id}, torso {cfg.torso}, {cfg.num_seeds} seeds x "
        f"{cfg.total_timesteps:,} steps on {jax.local_device_count()} "
        f"{jax.devices()[0].platform} device(s); compiling...",
        flush=True,
    )
    (params, metrics, eval_return), timing = run_seeds(run, seed_keys(cfg.seed, cfg.num_seeds))
    write_run(
        cfg.output_dir, f"ppo_rnn-{cfg.env_id}-{cfg.torso}", cfg, metrics, eval_return, params,
        timing, steps_per_update=cfg.batch_size, updates_per_eval=cfg.eval_every,
    )  # fmt: skip


if __name__ == "__main__":
    main()
