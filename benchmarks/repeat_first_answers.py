"""What a saved ppo_rnn run answers on RepeatFirst, seed by seed: is a shortfall forgetting (the
answer right early in the episode, wrong later) or a wrong mapping from first suit to answer?

    python benchmarks/repeat_first_answers.py runs/ppo_rnn-RepeatFirstEasy-s5-...  [more runs]

For every seed of each run: greedy accuracy by step of the episode (``--episodes`` fresh
episodes), the greedy answer given each first suit (rows: first suit; columns: share of answers),
and, at the first step alone (the first card is the card in view), the policy's probability of
the right answer for each suit and the distance between the actor's memory states written for
each pair of suits.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from algorithms import ppo_rnn
from memorax import results
from memorax.environments import make
from memorax.environments.repeat_first import NUM_SUITS
from memorax.experiment import run_once
from memorax.rollout import StepInput
from memorax.sweep import parse_sweep

STEPS = ((0, 1), (1, 5), (5, 10), (10, 20), (20, 30), (30, 40), (40, None))  # None: the last
READ_OUT_STEPS = (1, 25, 50)  # 0-based steps of the episode


def _flat(carry, batch: int) -> jax.Array:
    """An actor's memory state [batch, features], complex parts as two real features."""
    parts = [x.reshape(batch, -1) for x in jax.tree.leaves(carry)]
    return jnp.concatenate([p for x in parts for p in (x.real, jnp.imag(x))], axis=-1)


def _read_out(memory: jax.Array, first: jax.Array) -> jax.Array:
    """Accuracy of a linear read-out of the first suit from the memory states [E, D]: ridge
    least squares to one-hot suits fitted on the first half of the episodes, tested on the
    second half; by first suit."""
    half = memory.shape[0] // 2
    inputs = jnp.concatenate([memory, jnp.ones((memory.shape[0], 1))], axis=-1)
    inputs = inputs / (jnp.abs(inputs).max(0) + 1e-6)
    fit, test = inputs[:half], inputs[half:]
    targets = jax.nn.one_hot(first[:half], NUM_SUITS)
    gram = fit.T @ fit + 1e-3 * jnp.eye(fit.shape[1])
    weights = jnp.linalg.solve(gram, fit.T @ targets)
    right = jnp.argmax(test @ weights, axis=-1) == first[half:]
    suit = jax.nn.one_hot(first[half:], NUM_SUITS)
    return (right[:, None] * suit).sum(0) / suit.sum(0)


def answers(run_dir: str, episodes: int) -> None:
    cfg, checkpoint = results.read_run(run_dir, "ppo_rnn", ppo_rnn.PPOConfig, eval_episodes=32)
    if not cfg.env_id.startswith("RepeatFirst") or cfg.shared_torso:
        raise SystemExit(f"error: {run_dir} is not a RepeatFirst run with separate actor/critic")
    env, env_params = make(cfg.env_id)
    agent = ppo_rnn.make_agent(cfg, env, env_params)
    _, keys, _ = parse_sweep(cfg).inputs(cfg.seed)
    _, states = run_once(jax.vmap(agent.init), keys)
    params = results.load_checkpoint(checkpoint, states.params)
    space, length = env.action_space(env_params), env_params.max_steps_in_episode

    def play(params, key):
        reset_key, step_key = jax.random.split(key)
        resets = jax.random.split(reset_key, episodes)
        observation, env_state = jax.vmap(env.reset, in_axes=(0, None))(resets, env_params)

        def step(loop, key):
            env_state, inputs, carry = loop
            (actor_carry, policy), seen = agent.actor.apply(
                params[0], *inputs.as_sequence().network_args(carry[0]),
                capture_intermediates=True, mutable=["intermediates"],
            )  # fmt: skip
            carry = (actor_carry, carry[1])
            torso_output = seen["intermediates"]["torso"]["__call__"][0][1][:, 0]
            action = policy.mode()[:, 0]
            observation, env_state, reward, terminated, truncated, _ = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(key, episodes), env_state, action, env_params)
            done = terminated | truncated
            inputs = StepInput.after(observation, done, action, reward)
            return (env_state, inputs, carry), (action, _flat(carry[0], episodes), torso_output)

        start = (env_state, StepInput.first(observation, space), agent.initialize_carry(episodes))
        steps = jax.random.split(step_key, length)
        _, (action, memory, output) = jax.lax.scan(step, start, steps)
        first = env_state.first
        shares = jnp.zeros((NUM_SUITS, NUM_SUITS)).at[jnp.broadcast_to(first, action.shape), action]
        shares = shares.add(1.0)
        readout = [_read_out(x[t], first) for x in (memory, output) for t in READ_OUT_STEPS]
        return (action == first).mean(1), shares / shares.sum(1, keepdims=True), readout

    def first_step(params):
        cards = jnp.eye(NUM_SUITS)
        inputs = StepInput.first(cards, space).as_sequence()
        (actor_carry, _), policy, _ = agent.forward(
            params, inputs, agent.initialize_carry(NUM_SUITS)
        )
        state = _flat(actor_carry, NUM_SUITS)
        distance = jnp.linalg.norm(state[:, None] - state[None], axis=-1)
        right = jnp.diagonal(jax.nn.softmax(policy.logits[:, 0], axis=-1))
        return right, distance

    accuracy, shares, readout = jax.jit(jax.vmap(play))(params, keys)
    right, distance = jax.jit(jax.vmap(first_step))(params)
    print(f"{run_dir}: {cfg.torso}, {cfg.total_timesteps:,} steps")
    for seed in range(len(accuracy)):
        by_step = " ".join(f"{float(accuracy[seed, a:b].mean()):.2f}" for a, b in STEPS)
        spans = " ".join(f"[{a},{b or accuracy.shape[1]})" for a, b in STEPS)
        print(f"  seed {seed}: accuracy by step {spans}")
        print(f"    {by_step}")
        print("    greedy answer shares by first suit:")
        for suit in range(NUM_SUITS):
            print("     ", " ".join(f"{float(x):.2f}" for x in shares[seed, suit]))
        print("    first step, P(right answer) by suit:", np.round(np.asarray(right[seed]), 2))
        places = [(w, t) for w in ("memory state", "torso output") for t in READ_OUT_STEPS]
        for (where, t), held in zip(places, readout, strict=True):
            print(f"    linear read-out of the first suit from the {where} at step {t}, by suit:",
                  np.round(np.asarray(held[seed]), 2))  # fmt: skip
        print("    first step, distance between the memory states of suits i and j:")
        for suit in range(NUM_SUITS):
            print("     ", " ".join(f"{float(x):.2f}" for x in distance[seed, suit]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--episodes", type=int, default=512)
    args = parser.parse_args()
    for run_dir in args.runs:
        answers(run_dir, args.episodes)


if __name__ == "__main__":
    main()
