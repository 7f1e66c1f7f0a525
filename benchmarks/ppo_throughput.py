"""Speed and final returns of algorithms/ppo_rnn.py at the reference configuration of the best-known
single-file peer, PureJaxRL's recurrent PPO, measured side by side with that peer.

The configuration is the peer's own: CartPole-v1, 4 envs x 128 steps, Dense 128 ReLU -> GRU 128
shared by actor and critic, each head Dense 128 ReLU -> output layer, 4 epochs x 4 minibatches,
learning rate 2.5e-4 annealed, 976 updates (499,712 env steps per seed), no evaluation.

    python benchmarks/ppo_throughput.py --seeds 1 8 --repeats 3 1 --peer-path /tmp/peer/ppo_rnn.py

For each seed count, each repeat compiles and runs ours, then the peer (ours, peer, ours, peer,
...); compile and run seconds are medians over the repeats. Ours runs through
``memorax.experiment.run_seeds``, as the scripts do (one seed on one device: no seed vmap); the
peer as its own script does: ``jax.jit(train)`` for one seed, ``jax.jit(jax.vmap(train))`` for
several. The final return of a seed is the mean return of the training episodes (sampled
actions, not the greedy policy) that ended in its last 10 rounds (5,120 env steps). Results go to
benchmarks/results/ppo_throughput_<platform>.json and .md, and with ``--peer-path`` to
ppo_throughput_<platform>_vs_peer.json and .md.

The peer is not part of this repository. To reproduce it, take purejaxrl/ppo_rnn.py from
luchris429/purejaxrl at commit 1da1044c83e9a0d3f2a64fd9adf3fdea92871206 and purejaxrl/wrappers.py
at commit 5343613b07b3bc543c49695df601fc40f5ec3062, put both in one folder (/tmp/peer) and make
these edits for jax 0.9.2, flax 0.12 and gymnax 1.0, nothing else:

1. ppo_rnn.py, ``ScannedRNN.__call__``: ``nn.GRUCell()`` becomes
   ``nn.GRUCell(features=ins.shape[1])`` (flax's GRUCell now needs its width).
2. ppo_rnn.py, ``ScannedRNN.initialize_carry``: ``nn.GRUCell.initialize_carry(
   jax.random.PRNGKey(0), (batch_size,), hidden_size)`` becomes
   ``nn.GRUCell(features=hidden_size).initialize_carry(jax.random.PRNGKey(0), (batch_size,
   hidden_size))`` (now a method of a cell, given the input's shape).
3. wrappers.py: delete the imports of brax (two lines) and navix, which are not installed and
   are used only by the Brax and Navix wrappers.
4. wrappers.py, ``FlattenObservationWrapper.step``: gymnax 1.0's step returns ``obs, state,
   reward, terminated, truncated, info``; unpack that and pass on
   ``done = jnp.logical_or(terminated, truncated)``, which is what older gymnax returned.

This script passes the config of the peer's ``__main__`` to its ``make_train``, with
TOTAL_TIMESTEPS the integer 499,712 and DEBUG off.
"""

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from algorithms.ppo_rnn import PPO, PPOConfig, make_agent
from benchmarks.machine import machine_info
from memorax.environments import make
from memorax.experiment import run_seeds, seed_keys
from memorax.networks import MLP, Network, heads
from memorax.results import atomic_write, write_json
from memorax.rollout import mean_finished

RESULTS = Path(__file__).resolve().parent / "results"
UPDATES = 976
FINAL_ROUNDS = 10  # the final return averages the episodes that ended in these last rounds


def reference_config(num_seeds: int) -> PPOConfig:
    # Shared torso like the peer's network (one embedding and GRU for actor and critic).
    return PPOConfig(
        env_id="CartPole-v1", torso="gru", hidden_size=128, num_envs=4, num_steps=128,
        total_timesteps=UPDATES * 4 * 128, update_epochs=4, num_minibatches=4,
        learning_rate=2.5e-4, shared_torso=True, eval_every=UPDATES * 4 * 128, num_seeds=num_seeds,
    )  # fmt: skip


def peer_head(output: nn.Module) -> nn.Module:
    """The peer's head: Dense 128 ReLU (orthogonal(2) kernels, as the peer's), then ``output``."""
    return nn.Sequential(
        [MLP(features=(128,), kernel_init=nn.initializers.orthogonal(2.0)), output]
    )


def make_reference_agent(cfg: PPOConfig, env, env_params) -> PPO:
    """ppo_rnn.py's agent (feature extractor, GRU torso, optimizer) with the peer's heads: its
    own single linear heads do not learn CartPole at this configuration."""
    agent = make_agent(cfg, env, env_params)
    extractor, torso = agent.actor.feature_extractor, agent.actor.torso
    num_actions = env.action_space(env_params).n
    actor = Network(extractor, torso, peer_head(heads.Categorical(num_actions)))
    critic = Network(extractor, torso, peer_head(heads.VNetwork()))
    optimizer = agent.optimizers[0]  # one optimizer: actor and critic share the torso
    return PPO(cfg, env, env_params, actor, critic, optimizer, optimizer)


def measure_ours(num_seeds: int, updates: int) -> dict[str, Any]:
    """Compile and run ppo_rnn for ``num_seeds`` seeds through ``run_seeds``."""
    cfg = reference_config(num_seeds)
    env, env_params = make(cfg.env_id)
    agent = make_reference_agent(cfg, env, env_params)
    steps = updates * cfg.steps_per_round

    def run(key):
        key, state = agent.init(key)
        _, _, transitions = agent.train(key, state, steps)
        episodes = transitions.metrics["episodes"][-FINAL_ROUNDS:]  # [rounds]
        returns = transitions.metrics["episode_return"][-FINAL_ROUNDS:]  # NaN: none ended
        return jnp.where(episodes > 0, returns * episodes, 0.0).sum() / episodes.sum()

    final_returns, timing = run_seeds(run, seed_keys(0, num_seeds))
    return {
        "compile_seconds": timing.compile_seconds,
        "run_seconds": timing.run_seconds,
        "final_returns": [float(x) for x in final_returns],
    }


def load_peer(path: Path):
    """The peer's ppo_rnn module from ``path``; its folder goes on sys.path for its wrappers."""
    if not path.is_file():
        raise SystemExit(f"--peer-path {path}: no such file (see this script's docstring)")
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("peer_ppo_rnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_config(updates: int) -> dict[str, Any]:
    """The config of the peer's ``__main__``, for ``updates`` updates."""
    return {
        "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": updates * 4 * 128,
        "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95,
        "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
        "ENV_NAME": "CartPole-v1", "ANNEAL_LR": True, "DEBUG": False,
    }  # fmt: skip


def measure_peer(peer, num_seeds: int, updates: int) -> dict[str, Any]:
    """Compile and run the peer for ``num_seeds`` seeds the way its own script does."""
    train = peer.make_train(peer_config(updates))

    def run(key):
        info = train(key)["metric"]  # [updates, steps, envs]
        ended = info["returned_episode"][-FINAL_ROUNDS:]
        return mean_finished(info["returned_episode_returns"][-FINAL_ROUNDS:], ended)

    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    call, keys = (jax.jit(run), keys[0]) if num_seeds == 1 else (jax.jit(jax.vmap(run)), keys)
    start = time.perf_counter()
    compiled = call.lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    final_returns = jax.block_until_ready(compiled(keys))
    return {
        "compile_seconds": compile_seconds,
        "run_seconds": time.perf_counter() - start,
        "final_returns": [float(x) for x in jnp.atleast_1d(final_returns)],
    }


def summary(num_seeds: int, updates: int, repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats; final returns are the last repeat's (every repeat is the same run)."""
    steps = num_seeds * updates * 4 * 128
    run_seconds = statistics.median(r["run_seconds"] for r in repeats)
    returns = repeats[-1]["final_returns"]
    return {
        "num_seeds": num_seeds,
        "repeats": repeats,
        "compile_seconds": statistics.median(r["compile_seconds"] for r in repeats),
        "median_run_seconds": run_seconds,
        "env_steps": steps,
        "env_steps_per_second": steps / run_seconds,
        "final_return_mean": statistics.fmean(returns),
        "final_return_min": min(returns),
        "final_return_max": max(returns),
    }


def returns_cell(row: dict[str, Any]) -> str:
    if row["num_seeds"] == 1:
        return f"{row['final_return_mean']:.0f}"
    low, high = row["final_return_min"], row["final_return_max"]
    return f"{row['final_return_mean']:.0f} ({low:.0f}-{high:.0f})"


def report(name: str, num_seeds: int, repeat: str, updates: int, result: dict[str, Any]) -> None:
    steps_per_second = num_seeds * updates * 512 / result["run_seconds"]
    print(
        f"{num_seeds} seeds, repeat {repeat}, {name}: compile {result['compile_seconds']:.1f} s, "
        f"{steps_per_second:,.0f} env steps/s, "
        f"final returns {[round(x) for x in result['final_returns']]}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--repeats", type=int, nargs="+", default=[3],
        help="repeats for every seed count, or one count per --seeds entry",
    )  # fmt: skip
    parser.add_argument("--updates", type=int, default=UPDATES, help="PPO rounds of 4 x 128 steps")
    parser.add_argument("--peer-path", type=Path, help="PureJaxRL's edited ppo_rnn.py (docstring)")
    args = parser.parse_args()
    if len(args.repeats) not in (1, len(args.seeds)):
        parser.error(f"--repeats takes one count or one per --seeds entry ({len(args.seeds)})")
    repeats = args.repeats * len(args.seeds) if len(args.repeats) == 1 else args.repeats
    peer = load_peer(args.peer_path) if args.peer_path else None
    ours, theirs = [], []
    for num_seeds, count in zip(args.seeds, repeats, strict=True):
        our_repeats, peer_repeats = [], []
        for repeat in range(count):
            our_repeats.append(measure_ours(num_seeds, args.updates))
            report("ours", num_seeds, f"{repeat + 1}/{count}", args.updates, our_repeats[-1])
            if peer is not None:
                peer_repeats.append(measure_peer(peer, num_seeds, args.updates))
                report("peer", num_seeds, f"{repeat + 1}/{count}", args.updates, peer_repeats[-1])
        ours.append(summary(num_seeds, args.updates, our_repeats))
        if peer is not None:
            theirs.append(summary(num_seeds, args.updates, peer_repeats))

    platform = jax.devices()[0].platform
    machine = machine_info()
    where = (
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, jax {machine['jax']}, "
        f"{machine['date']}. {args.updates} updates ({args.updates * 512:,} env steps) per seed. "
        f"`python benchmarks/ppo_throughput.py {' '.join(sys.argv[1:])}`"
    )
    returns_note = (
        f"Final return: mean return of the training episodes (sampled actions) that ended in the "
        f"last {FINAL_ROUNDS} rounds; over seeds, mean (min-max)."
    )
    config = vars(reference_config(1))
    write_json(RESULTS / f"ppo_throughput_{platform}.json", {
        "machine": machine, "config": config, "updates": args.updates, "rows": ours,
    })  # fmt: skip
    lines = [
        f"# ppo_rnn at PureJaxRL's reference configuration ({platform})", "", where, "",
        returns_note, "",
        "| seeds | repeats | compile (s) | median run (s) | env steps/s | per seed "
        "| final return |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for row in ours:
        lines.append(
            f"| {row['num_seeds']} | {len(row['repeats'])} | {row['compile_seconds']:.1f} | "
            f"{row['median_run_seconds']:.1f} | {row['env_steps_per_second']:,.0f} | "
            f"{row['env_steps_per_second'] / row['num_seeds']:,.0f} | {returns_cell(row)} |"
        )
    atomic_write(RESULTS / f"ppo_throughput_{platform}.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    if peer is None:
        return

    write_json(RESULTS / f"ppo_throughput_{platform}_vs_peer.json", {
        "machine": machine, "config": config, "peer_config": peer_config(args.updates),
        "updates": args.updates, "ours": ours, "peer": theirs,
    })  # fmt: skip
    lines = [
        f"# ppo_rnn against PureJaxRL's recurrent PPO, side by side ({platform})", "", where, "",
        "Peer: luchris429/purejaxrl purejaxrl/ppo_rnn.py at 1da1044c, with the edits listed in "
        "benchmarks/ppo_throughput.py's docstring. Each repeat ran ours, then the peer.", "",
        returns_note, "",
        "| seeds | repeats | compile (s) ours / peer | env steps/s ours / peer | speed ratio "
        "| final return ours | final return peer |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for our, their in zip(ours, theirs, strict=True):
        lines.append(
            f"| {our['num_seeds']} | {len(our['repeats'])} | {our['compile_seconds']:.1f} / "
            f"{their['compile_seconds']:.1f} | {our['env_steps_per_second']:,.0f} / "
            f"{their['env_steps_per_second']:,.0f} | "
            f"{our['env_steps_per_second'] / their['env_steps_per_second']:.2f}x | "
            f"{returns_cell(our)} | {returns_cell(their)} |"
        )
    path = RESULTS / f"ppo_throughput_{platform}_vs_peer.md"
    atomic_write(path, ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
