"""What gymnax's auto-reset costs each POPGym task under vmap: time per vmapped step with
auto-reset (``env.step``, as the scripts step their envs) against the same step without reset.

    python benchmarks/popgym_reset.py --num-envs 512 --num-steps 200 --repeats 5

gymnax's ``step`` computes a fresh ``reset_env`` at every step and selects it, leaf by leaf of the
state, where an episode ended. The scripts vmap ``step`` over their envs (algorithms/ppo_rnn.py's
``_env_step``), so the reset is computed for every env at every step, taken or not: a reset that
shuffles a deck or lays out a board is paid at every step. Each env is timed three ways, the same
vmapped scan of ``--num-steps`` steps of ``--num-envs`` envs under random actions:

- ``no reset``: ``step_env`` and the truncation check only (episodes run on past their end,
  which changes no array shape and so no cost);
- ``stored reset``: the auto-reset's select against one reset state computed before the scan, so
  the select over the state is paid but no reset is computed;
- ``auto-reset``: gymnax's ``step``.

``auto-reset / no reset - 1`` is what auto-reset adds to a step; ``auto-reset - stored reset`` is
the part of it spent computing resets that are not taken. Every POPGym id ``make`` builds is timed
(``benchmarks.popgym.families()`` at each difficulty), so families added later are covered.
Rounds alternate between the three ways and the median of ``--repeats`` is reported. Results go
to benchmarks/results/popgym_reset_<platform>.json and .md.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.machine import machine_info
from benchmarks.popgym import DIFFICULTIES, families
from memorax.environments import make
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
WAYS = ("no reset", "stored reset", "auto-reset")


def stepper(env: Any, params: Any, way: str, stored_reset: tuple[Any, Any]) -> Callable:
    """One env's step (key, state, action) -> (obs, state, reward, terminated, truncated)."""

    def step(key, state, action):
        if way == "auto-reset":
            return env.step(key, state, action, params)[:5]
        key_step, _ = jax.random.split(key)  # as gymnax's step splits it
        obs, next_state, reward, terminated, _ = env.step_env(key_step, state, action, params)
        truncated = env.is_truncated(next_state, params)
        if way == "stored reset":
            done = jnp.logical_or(terminated, truncated)
            reset_obs, reset_state = stored_reset
            next_state = jax.tree.map(
                lambda r, s: jax.lax.select(done, r, s), reset_state, next_state
            )
            obs = jax.lax.select(done, reset_obs, obs)
        return obs, next_state, reward, terminated, truncated

    return step


def compiled_rollout(env_id: str, way: str, num_envs: int, num_steps: int):
    """The compiled scan of ``num_steps`` vmapped steps and its inputs (key, states)."""
    env, params = make(env_id)
    action_space = env.action_space(params)
    key = jax.random.key(0)
    stored_reset = env.reset(key, params)
    states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)[1]
    step = jax.vmap(stepper(env, params, way, stored_reset))

    def rollout(key, states):
        def one_step(states, key):
            action_key, step_key = jax.random.split(key)
            actions = jax.vmap(action_space.sample)(jax.random.split(action_key, num_envs))
            obs, states, reward, terminated, truncated = step(
                jax.random.split(step_key, num_envs), states, actions
            )
            return states, reward.sum() + obs.sum() + terminated.sum() + truncated.sum()

        return jax.lax.scan(one_step, states, jax.random.split(key, num_steps))

    start = time.perf_counter()
    call = jax.jit(rollout).lower(key, states).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(call(key, states))  # the first run pays one-off costs
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(states)) // num_envs
    return call, (key, states), compile_seconds, state_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-ids", nargs="+", help="default: every POPGym id make() builds")
    parser.add_argument("--num-envs", type=int, default=512)
    parser.add_argument("--num-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env_ids = args.env_ids or [task + level for task in families() for level in DIFFICULTIES]
    platform = jax.devices()[0].platform
    rows = []
    for env_id in env_ids:
        try:
            calls = {
                way: compiled_rollout(env_id, way, args.num_envs, args.num_steps) for way in WAYS
            }
        except Exception as error:  # one broken env must not cost the other rows
            rows.append({"env_id": env_id, "error": f"{type(error).__name__}: {error}"})
            print(f"{env_id}: failed ({rows[-1]['error']})", flush=True)
            continue
        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):
            for way, (call, inputs, _, _) in calls.items():
                start = time.perf_counter()
                jax.block_until_ready(call(*inputs))
                seconds[way].append(time.perf_counter() - start)
        step_us = {way: 1e6 * statistics.median(seconds[way]) / args.num_steps for way in WAYS}
        row = {
            "env_id": env_id,
            "state_bytes_per_env": calls["auto-reset"][3],
            "microseconds_per_step": step_us,
            "run_seconds": seconds,
            "compile_seconds": {way: calls[way][2] for way in WAYS},
            "auto_reset_overhead": step_us["auto-reset"] / step_us["no reset"] - 1,
            "reset_compute_microseconds": step_us["auto-reset"] - step_us["stored reset"],
        }
        rows.append(row)
        print(
            f"{env_id}: " + ", ".join(f"{way} {us:,.0f} us" for way, us in step_us.items())
            + f" per step ({row['auto_reset_overhead']:+.0%})",
            flush=True,
        )  # fmt: skip
    results = {"machine": machine_info(), "args": vars(args), "rows": rows}
    write_json(RESULTS / f"popgym_reset_{platform}.json", results)
    machine = results["machine"]
    lines = [
        f"# Auto-reset under vmap: POPGym tasks ({platform})",
        "",
        f"`python benchmarks/popgym_reset.py --num-envs {args.num_envs} --num-steps "
        f"{args.num_steps} --repeats {args.repeats}`: microseconds per vmapped step of "
        f"{args.num_envs} envs (random actions, one jitted scan of {args.num_steps} steps), "
        f"medians of {args.repeats} rounds alternating the three ways (see the script).",
        "",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, jax {machine['jax']}, "
        f"{machine['date']}.",
        "",
        "| env id | state bytes/env | no reset (us) | stored reset (us) | auto-reset (us) | "
        "auto-reset adds | computing resets (us) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['env_id']} | failed: {row['error'][:80]} | | | | | |")
            continue
        us = row["microseconds_per_step"]
        lines.append(
            f"| {row['env_id']} | {row['state_bytes_per_env']:,} | {us['no reset']:,.0f} | "
            f"{us['stored reset']:,.0f} | {us['auto-reset']:,.0f} | "
            f"{row['auto_reset_overhead']:+.0%} | {row['reset_compute_microseconds']:,.0f} |"
        )
    atomic_write(RESULTS / f"popgym_reset_{platform}.md", ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
