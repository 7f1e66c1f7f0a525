"""Greedy against sampled actions for finished ppo_rnn runs: every seed's saved parameters played
on the same fresh episodes twice, with the policy's mode (what every memorax table reports) and
with actions drawn from the policy, beside a uniform-random policy on the same env.

    python algorithms/ppo_rnn.py --env-id LabyrinthEscapeEasy --use-prev-action --use-reset-flag
    python benchmarks/greedy_vs_sampled.py runs/ppo_rnn-LabyrinthEscapeEasy-gru-* --episodes 256

A deterministic policy that has not learned a task can do far worse than a random one where
acting the same way on the same observation loops (a maze); this tells that apart from a policy
that is bad when sampled too. Prints a markdown table: per run, the mean return of each seed and
the IQM over seeds, and the share of episodes whose return is above ``--success-above``.
"""

import argparse
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from algorithms.ppo_rnn import SCRIPT, PPOConfig, make_agent
from memorax import results
from memorax.environments import make
from memorax.experiment import seed_keys
from memorax.rollout import greedy_episode_returns
from memorax.statistics import interquartile_mean


def episode_returns(agent, num_actions: int, policy: str, episodes: int, params, key) -> jax.Array:
    """First-episode returns of ``episodes`` fresh envs (NaN where one did not finish) with the
    policy's ``mode``, a ``sample`` of it, or uniformly ``random`` actions. ``key`` deals the
    episodes (the same for every policy); actions draw from a stream folded off it, carried
    along so that each step draws anew."""

    def act(carry, inputs):
        carry, key = carry
        key, draw = jax.random.split(key)
        carry, distribution, _ = agent.forward(params, inputs, carry)
        if policy == "mode":
            action = distribution.mode()
        elif policy == "sample":
            action = distribution.sample(seed=draw)
        else:
            action = jax.random.randint(draw, distribution.mode().shape, 0, num_actions)
        return (carry, key), action[:, 0]

    steps = agent.env_params.max_steps_in_episode + 1
    carry = (agent.initialize_carry(episodes), jax.random.fold_in(key, 1))
    returns, finished = greedy_episode_returns(
        key, agent.env, agent.env_params, act, carry, episodes, steps, agent.env_action
    )
    return jnp.where(finished, returns, jnp.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished ppo_rnn run folders")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--success-above", type=float, default=-0.99)
    args = parser.parse_args()
    print("| run | policy | per-seed mean return | IQM | episodes above threshold |")
    print("|---|---|---|---:|---|")
    for run in args.runs:
        cfg, checkpoint = results.read_run(run, SCRIPT, PPOConfig)
        env, env_params = make(cfg.env_id)
        action_space = env.action_space(env_params)
        if not hasattr(action_space, "n"):
            raise SystemExit(f"{run}: the random policy needs a discrete action space")
        agent = make_agent(cfg, env, env_params)
        keys = seed_keys(cfg.seed, cfg.num_seeds)
        _, states = jax.vmap(agent.init)(keys)
        params = results.load_checkpoint(checkpoint, states.params)
        for policy in ("mode", "sample", "random"):
            play = partial(episode_returns, agent, action_space.n, policy, args.episodes)
            returns = np.asarray(jax.jit(jax.vmap(play))(params, keys))
            means = np.nanmean(returns, axis=1)
            above = np.mean(returns > args.success_above, axis=1)
            print(
                f"| {Path(run).name} | {policy} | {', '.join(f'{m:.2f}' for m in means)} | "
                f"{interquartile_mean(means):.2f} | {', '.join(f'{a:.0%}' for a in above)} |"
            )


if __name__ == "__main__":
    main()
