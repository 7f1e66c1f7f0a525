"""Where an off-policy training round's time goes: dqn_mamba and sac_s5 at their default flags,
each part of one round timed on its own, beside the whole round as the scripts run it.

    python benchmarks/replay_profile.py --rounds 10 --repeats 5

Configs: dqn_mamba with --torso mamba (uniform and --prioritised) and --torso mlp, sac_s5 with
--torso s5 and --torso mlp; every other flag is the script's default. Each agent is the script's
``make_agent``; ``--num-seeds`` seeds are initialised and warmed up (--learning-starts random
steps, as the scripts start). Each part is then compiled as its own ``jax.jit(jax.vmap(...))``
call over the seeds that repeats the part ``--rounds`` rounds' worth of times in a ``lax.scan``;
a state it updates is donated, so the buffer is written in place as in training. A part's time
is the median of ``--repeats`` runs after a first run, per round; "whole round" is the script's
own ``train`` for ``--rounds`` rounds. Parts nest (acting includes its buffer adds, an update
step its sample, burn-in, loss and gradient), so the shares do not add up to 1.

Not every part is a method of the scripts; those rows time the closest composite of the scripts'
own methods, and their names say so:

- burn-in: the torso call on the first --burn-in replayed steps from the stored carry, without
  gradient (the first lines of DQN._loss and SAC._replayed), on batches drawn beforehand;
- loss + gradient: ``jax.grad`` of DQN._loss, SAC._critic_loss (targets given: their cost is the
  "soft targets" row) and SAC._actor_loss on batches drawn beforehand;
- start carries only: the buffer's sample (and the update step that draws it) with the stored
  carries gathered at each sequence's first step only, all that the scripts read of them;
- with --torso mlp there is no carry, so XLA drops SAC's burn-in passes (their outputs are
  only the carry), here as in the script; DQN's burn-in Q-values are used, so its pass stays;
- twin critics: SAC.q_values (``jax.vmap`` over the stacked critics) against the two critics
  called one after the other and against one critic called once on both batches (one set of
  weights: the floor a batched pair could reach), one forward pass over a replayed batch.

The sample-against-buffer-size table fills buffers of each size with the warmed-up mlp DQN's
steps (stored carries cost the same at any size, so they are left out) and times uniform and
prioritised samples. Results go to benchmarks/results/replay_profile_<platform>.json and .md.
"""

import argparse
import copy
import dataclasses
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from algorithms import dqn_mamba, sac_s5
from benchmarks.machine import machine_info
from memorax import replay
from memorax.buffers import make_episode_buffer, make_prioritised_episode_buffer
from memorax.environments import make
from memorax.experiment import seed_keys
from memorax.results import atomic_write, write_json

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {  # row label: (script, flags besides the defaults)
    "dqn_mamba": ("dqn_mamba", {}),
    "dqn_mamba --prioritised": ("dqn_mamba", {"prioritised": True}),
    "dqn_mamba --torso mlp": ("dqn_mamba", {"torso": "mlp"}),
    "sac_s5": ("sac_s5", {}),
    "sac_s5 --torso mlp": ("sac_s5", {"torso": "mlp"}),
}
WHOLE_ROUND = "whole round (train for --rounds rounds, per round)"
UPDATE = "update step ({}._update: sample, loss, gradient, optimizer)"
START_ONLY_SAMPLE = "  sample, start carries only (not the script's)"
START_ONLY_UPDATE = "  update step, start carries only (not the script's)"
LOSS_AND_GRADIENT = "loss + gradient (jax.grad of DQN._loss)"
SECOND_BURN_IN = "critics' second burn-in pass in the actor loss (the same pass, updated critics)"
HLO_TYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
TWIN_CRITICS = ("vmap (SAC.q_values)", "one critic after the other", "one call, one weight set")


@dataclasses.dataclass(frozen=True)
class Part:
    """One timed row: ``function(*arguments())`` runs ``--rounds`` rounds' worth of the part for
    one seed; with ``donate`` its first argument is a state that it returns first, updated."""

    name: str
    per_round: str  # how often a round runs it
    function: Callable
    arguments: Callable[[], tuple]  # built when timed, so one donated copy exists at a time
    donate: bool = False
    full_width: tuple[str, ...] = ()  # HLO shapes of sampled carries [S, B, L, ...] to look for


def time_part(part: Part, repeats: int) -> tuple[float, list[float], bool]:
    """Compile ``jax.jit(jax.vmap(part.function))``, run it once, then ``repeats`` times; returns
    (compile seconds, run seconds, whether the compiled program holds an array of one of the
    ``part.full_width`` shapes). A donated state carries on from the previous run's output."""
    arguments = list(part.arguments())
    begin = time.perf_counter()
    donate = (0,) if part.donate else ()
    call = jax.jit(jax.vmap(part.function), donate_argnums=donate).lower(*arguments).compile()
    compile_seconds = time.perf_counter() - begin
    program = call.as_text() if part.full_width else ""
    holds_full_width = any(shape in program for shape in part.full_width)
    seconds = []
    for run in range(repeats + 1):
        begin = time.perf_counter()
        outputs = jax.block_until_ready(call(*arguments))
        if run:  # the first run pays one-off costs
            seconds.append(time.perf_counter() - begin)
        if part.donate:
            arguments[0] = outputs[0]
    return compile_seconds, seconds, holds_full_width


def fresh(tree: Any) -> Any:
    """A copy to donate, so the warmed-up state stays for the next part."""
    return jax.tree.map(jnp.copy, tree)


def repeat(step: Callable, count: int) -> Callable:
    """``(carry, key) -> carry`` that runs ``step(carry, key)`` ``count`` times, fresh keys."""

    def run(carry, key):
        keys = jax.random.split(key, count)
        return jax.lax.scan(lambda carry, key: (step(carry, key), None), carry, keys)[0]

    return run


def over(function: Callable) -> Callable:
    """``(*fixed, batches, keys)`` -> ``function(*fixed, batch, key)`` for each batch, stacked."""

    def run(*fixed_batches_key):
        *fixed, batches, key = fixed_batches_key
        keys = jax.random.split(key, jax.tree.leaves(batches)[0].shape[0])

        def step(_, batch_key):
            return None, function(*fixed, *batch_key)

        return jax.lax.scan(step, None, (batches, keys))[1]

    return run


def start_carries_only(buffer):
    """``buffer`` whose sample gathers the stored carries only at each sequence's first step
    ([B, 1, ...]): the scripts read nothing else of them (``carry[:, 0]``)."""

    def sample(buffer_state, key):
        experience = buffer_state.experience
        drawn = buffer.sample(buffer_state.replace(experience=experience.replace(carry=None)), key)
        rows, slots = jnp.divmod(drawn.indices, buffer.row_length)
        carry = jax.tree.map(lambda leaf: leaf[rows, slots][:, None], experience.carry)
        return drawn.replace(experience=drawn.experience.replace(carry=carry))

    return dataclasses.replace(buffer, sample=sample)


def with_buffer(agent, buffer):
    """A shallow copy of ``agent`` that samples from ``buffer`` (the script is not edited)."""
    agent = copy.copy(agent)
    agent.buffer = buffer
    return agent


def sampling(buffer, count: int) -> Callable:
    """(buffer_state, key) -> the leafwise sum of ``count`` samples: every sampled element is
    gathered and written once, as for a sample that feeds a loss."""

    def run(buffer_state, key):
        def add_sample(total, key):
            sample = buffer.sample(buffer_state, key)
            return jax.tree.map(lambda t, x: t + x.astype(jnp.float32), total, sample)

        shapes = jax.eval_shape(buffer.sample, buffer_state, key)
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), shapes)
        return repeat(add_sample, count)(zeros, key)

    return run


def adding(buffer, count: int) -> Callable:
    """(buffer_state, items, reset) -> (the state after ``count`` adds of the one step [E, 1] of
    ``items``, as every env step of the scripts adds one, None)."""

    def run(buffer_state, items, reset):
        add = repeat(lambda state, _: buffer.add(state, items, reset), count)
        return add(buffer_state, jax.random.key(0)), None

    return run


def stored_step(buffer_state):
    """Every seed's first stored step of every env [S, E, 1, ...] and its resets, to add again."""
    return jax.tree.map(lambda x: x[:, :, :1], (buffer_state.experience, buffer_state.reset))


def drawn_batches(agent, state, keys, count: int):
    """``count`` samples per seed [S, count, ...], with the stored carries at the start only."""
    sample = jax.vmap(start_carries_only(agent.buffer).sample, in_axes=(None, 0))

    def draw(buffer_state, key):
        return sample(buffer_state, jax.random.split(key, count))

    return jax.jit(jax.vmap(draw))(state.buffer_state, keys)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def has_carries(state) -> bool:
    return bool(jax.tree.leaves(state.buffer_state.experience.carry))


def full_width_shapes(agent, state) -> tuple[str, ...]:
    """HLO shapes (``f32[4,16,43,128,16]``) of the stored carries as a sample gathers them:
    [seeds, batch, replayed steps, ...]. No other array of the update has these dims."""
    buffer = agent.buffer
    shapes = []
    for leaf in jax.tree.leaves(state.buffer_state.experience.carry):  # [S, E, row, ...]
        dims = (leaf.shape[0], buffer.sample_batch_size, buffer.sample_sequence_length)
        dtype = HLO_TYPES.get(jnp.dtype(leaf.dtype).name, jnp.dtype(leaf.dtype).name)
        shapes.append(f"{dtype}[{','.join(map(str, dims + leaf.shape[3:]))}]")
    return tuple(shapes)


def common_parts(
    agent, state, keys, rounds: int, num_samples: int, acting: tuple[str, Callable], adds: int
) -> list[Part]:
    """Acting (``acting``: its method's name and the timed function), buffer add and sampling,
    as both scripts run them."""
    buffer, buffer_state = agent.buffer, state.buffer_state
    parts = [
        Part(
            f"acting ({acting[0]}: policy, env step, buffer add)",
            f"{plural(adds, 'step')} of {agent.cfg.num_envs} envs", acting[1],
            lambda: (fresh(state), keys), donate=True,
        ),
        Part(
            "  of which buffer add", f"{plural(adds, 'add')} [E, 1]",
            adding(buffer, adds * rounds),
            lambda: (fresh(buffer_state), *stored_step(buffer_state)), donate=True,
        ),
        Part(
            f"sample ({'prioritised' if agent.buffer.priority_exponent else 'uniform'})",
            str(num_samples), sampling(buffer, num_samples * rounds), lambda: (buffer_state, keys),
        ),
    ]  # fmt: skip
    if has_carries(state):
        parts.append(Part(
            START_ONLY_SAMPLE, str(num_samples),
            sampling(start_carries_only(buffer), num_samples * rounds),
            lambda: (buffer_state, keys),
        ))  # fmt: skip
    return parts


def update_and_round_parts(agent, state, keys, rounds: int, num_updates: int) -> list[Part]:
    """The update step (with the stored carries gathered as the script does and, where there
    are carries, at the start only), then the whole round."""

    def updating(agent):
        return lambda state, key: (repeat(lambda s, k: agent._update(s, k)[0], num_updates)(
            state, key
        ), None)  # fmt: skip

    def whole_round(state, key):
        _, state, transitions = agent.train(key, state, rounds * agent.cfg.steps_per_round)
        return state, transitions.metrics

    per_round, name = str(num_updates // rounds), UPDATE.format(type(agent).__name__)
    parts = [Part(
        name, per_round, updating(agent), lambda: (fresh(state), keys), donate=True,
        full_width=full_width_shapes(agent, state),
    )]  # fmt: skip
    if has_carries(state) and agent.buffer.priority_exponent is None:
        narrow = with_buffer(agent, start_carries_only(agent.buffer))
        parts.append(Part(
            START_ONLY_UPDATE, per_round, updating(narrow), lambda: (fresh(state), keys),
            donate=True,
        ))  # fmt: skip
    parts.append(Part(WHOLE_ROUND, "1", whole_round, lambda: (fresh(state), keys), donate=True))
    return parts


def dqn_parts(agent: dqn_mamba.DQN, state, keys, rounds: int) -> list[Part]:
    cfg = agent.cfg
    burn, num_updates = cfg.burn_in, rounds * cfg.gradient_steps

    def acting(state, key):
        def one_round(state, key):
            epsilon = agent.epsilon_schedule(state.env_steps)
            return agent._act(state, key, epsilon, cfg.train_frequency)[0]

        return repeat(one_round, rounds)(state, key), None

    def burn_in(params, sample, _):
        sequence = sample.experience
        start = jax.tree.map(lambda x: x[:, 0], sequence.carry)
        inputs, _, _ = replay.insert_final_observation(sequence, burn)
        head = jax.tree.map(lambda x: x[:, :burn], inputs)
        return agent.q_values(jax.lax.stop_gradient(params), head, start)

    def loss_and_gradient(params, target_params, sample, _):
        weights = jnp.ones_like(sample.probabilities)
        return jax.grad(agent._loss, has_aux=True)(params, target_params, sample, weights)[0]

    parts = common_parts(
        agent, state, keys, rounds, cfg.gradient_steps, ("DQN._act", acting), cfg.train_frequency
    )
    if agent.prioritised:  # the loss is the uniform one's: time what the priorities change
        parts = [part for part in parts if part.name != START_ONLY_SAMPLE]
    else:
        batches = drawn_batches(agent, state, keys, num_updates)
        parts += [
            Part(
                "burn-in pass, online network (DQN._loss's first lines)", str(cfg.gradient_steps),
                over(burn_in), lambda: (state.params, batches, keys),
            ),
            Part(
                LOSS_AND_GRADIENT, str(cfg.gradient_steps),
                over(loss_and_gradient),
                lambda: (state.params, state.target_params, batches, keys),
            ),
        ]  # fmt: skip
    return parts + update_and_round_parts(agent, state, keys, rounds, num_updates)


def sac_parts(agent: sac_s5.SAC, state, keys, rounds: int) -> tuple[list[Part], list[Part]]:
    """The round's parts, and the twin critics three ways."""
    cfg = agent.cfg
    burn, num_updates = cfg.burn_in, rounds * cfg.updates_per_round
    updates = str(cfg.updates_per_round)

    def acting(state, key):
        def step(state, key):
            return agent._env_step(state, key)[0]

        return repeat(step, rounds * cfg.env_steps_per_round)(state, key), None

    def critic_burn_in(critic_params, sample, _):
        inputs, action, _, _, start = agent._replay(sample.experience)
        head, head_action = jax.tree.map(lambda x: x[:, :burn], (inputs, action))
        frozen = jax.lax.stop_gradient(critic_params)
        return agent.q_values(frozen, head, start.critic, head_action)[0]

    def actor_burn_in(actor_params, sample, _):
        inputs, _, _, _, start = agent._replay(sample.experience)
        head = jax.tree.map(lambda x: x[:, :burn], inputs)
        return agent.policy(jax.lax.stop_gradient(actor_params), head, start.actor)[0]

    def soft_targets(params, sample, key):
        batch = agent._replay(sample.experience)
        return agent._targets(params, sample.experience, batch, key)

    def critic_gradient(critic_params, sample, _):
        batch = agent._replay(sample.experience)
        targets = sample.experience.reward[:, burn : burn + cfg.sequence_length]  # any values
        valid = jnp.ones(targets.shape, bool)
        return jax.grad(agent._critic_loss, has_aux=True)(critic_params, batch, targets, valid)[0]

    def actor_gradient(params, sample, key):
        batch = agent._replay(sample.experience)
        loss = jax.grad(agent._actor_loss, has_aux=True)
        return loss(params.actor, params.log_alpha, params.critic, batch, key)[0]

    def twin_critics(way):
        def apply(critic_params, sample, _):
            inputs, action, _, _, start = agent._replay(sample.experience)
            if way == TWIN_CRITICS[0]:
                return agent.q_values(critic_params, inputs, start.critic, action)[1]
            if way == TWIN_CRITICS[1]:

                def critic(i):
                    params_i = jax.tree.map(lambda x: x[i], critic_params)
                    carry_i = jax.tree.map(lambda x: x[:, i], start.critic)
                    return agent.critic.apply(params_i, *inputs.network_args(carry_i), action)[1]

                return jnp.stack([critic(i) for i in range(sac_s5.NUM_CRITICS)])
            both = jax.tree.map(lambda x: jnp.concatenate([x, x]), (inputs, action))
            carry = jax.tree.map(lambda x: jnp.concatenate([x[:, 0], x[:, 1]]), start.critic)
            first = jax.tree.map(lambda x: x[0], critic_params)
            return agent.critic.apply(first, *both[0].network_args(carry), both[1])[1]

        return apply

    batches = drawn_batches(agent, state, keys, num_updates)
    params = state.params
    acting = ("SAC._env_step", acting)
    parts = common_parts(
        agent, state, keys, rounds, cfg.updates_per_round, acting, cfg.env_steps_per_round
    )
    parts += [
        Part(
            "soft targets: actor + target critics over the replay (SAC._targets)", updates,
            over(soft_targets), lambda: (params, batches, keys),
        ),
        Part(
            "critics' burn-in pass, both critics (SAC._replayed's first lines)", updates,
            over(critic_burn_in), lambda: (params.critic, batches, keys),
        ),
        Part(
            "critic loss + gradient, its burn-in included (jax.grad of SAC._critic_loss)",
            updates, over(critic_gradient), lambda: (params.critic, batches, keys),
        ),
        Part(
            "actor's burn-in pass (SAC._replayed's first lines)", updates, over(actor_burn_in),
            lambda: (params.actor, batches, keys),
        ),
        Part(
            SECOND_BURN_IN, updates, over(critic_burn_in), lambda: (params.target, batches, keys),
        ),
        Part(
            "actor loss + gradient, both burn-ins included (jax.grad of SAC._actor_loss)",
            updates, over(actor_gradient), lambda: (params, batches, keys),
        ),
    ]  # fmt: skip
    parts += update_and_round_parts(agent, state, keys, rounds, num_updates)
    twins = [
        Part(way, "1 pass", over(twin_critics(way)), lambda: (params.critic, batches, keys))
        for way in TWIN_CRITICS
    ]
    return parts, twins


def warmed_up(script: str, flags: dict, num_seeds: int):
    """The script's agent at its default flags (with ``flags``) and ``num_seeds`` seeds' states
    after init and --learning-starts random steps, as the scripts start training."""
    module = dqn_mamba if script == "dqn_mamba" else sac_s5
    config = module.DQNConfig if script == "dqn_mamba" else module.SACConfig
    cfg = config(num_seeds=num_seeds, **flags)
    env, env_params = make(cfg.env_id)
    agent = module.make_agent(cfg, env, env_params)
    _, state = jax.jit(jax.vmap(functools.partial(module.start, agent)))(seed_keys(0, num_seeds))
    return agent, jax.block_until_ready(state)


def profile(parts: list[Part], repeats: int, rounds: int, label: str) -> list[dict]:
    rows = []
    for part in parts:
        compile_seconds, seconds, holds_full_width = time_part(part, repeats)
        ms = 1000 * statistics.median(seconds) / rounds
        rows.append({
            "part": part.name, "per_round": part.per_round, "ms_per_round": ms,
            "compile_seconds": compile_seconds, "run_seconds": seconds,
        })  # fmt: skip
        if part.full_width:
            rows[-1]["gathers_full_width_carries"] = holds_full_width
        print(f"{label}: {part.name.strip()}: {ms:.2f} ms/round", flush=True)
    whole = next((row["ms_per_round"] for row in rows if row["part"] == WHOLE_ROUND), None)
    for row in rows:
        row["share_of_round"] = row["ms_per_round"] / whole if whole else None
    return rows


def sample_against_size(agent, state, keys, sizes, rounds: int, repeats: int) -> list[dict]:
    """Uniform and prioritised samples (one per round) from buffers of each size, filled with
    the warmed-up steps of ``state``'s buffer (stored carries left out)."""
    cfg = agent.cfg
    stored = cfg.learning_starts // cfg.num_envs
    experience = state.buffer_state.experience.replace(carry=None)
    source = state.buffer_state.replace(experience=experience)
    rows = []
    for size in sizes:
        for prioritised in (False, True):
            make_buffer = make_prioritised_episode_buffer if prioritised else make_episode_buffer
            buffer = make_buffer(
                max_length=size, min_length=min(cfg.learning_starts, size),
                sample_batch_size=cfg.batch_size, sample_sequence_length=cfg.replay_length,
                add_batch_size=cfg.num_envs, sequence_starts="any",
            )  # fmt: skip
            steps = min(stored, buffer.row_length)

            def fill(source, buffer=buffer, steps=steps):
                empty = buffer.init(jax.tree.map(lambda x: x[0, 0], source.experience))
                items = jax.tree.map(lambda x: x[:, :steps], (source.experience, source.reset))
                return buffer.add(empty, *items)

            filled = jax.jit(jax.vmap(fill))(source)
            part = Part(
                "sample", "1", sampling(buffer, rounds), lambda filled=filled: (filled, keys)
            )
            label = f"{'prioritised' if prioritised else 'uniform'} sample, buffer {size:,}"
            rows.append({"buffer_size": size, "prioritised": prioritised,
                         **profile([part], repeats, rounds, label)[0]})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--num-seeds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--buffer-sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    args = parser.parse_args()
    begin = time.perf_counter()
    keys = seed_keys(1, args.num_seeds)
    configs, twins, sizes = {}, [], []
    for label in args.configs:
        script, flags = CONFIGS[label]
        agent, state = warmed_up(script, flags, args.num_seeds)
        if script == "dqn_mamba":
            parts = dqn_parts(agent, state, keys, args.rounds)
        else:
            parts, twin_parts = sac_parts(agent, state, keys, args.rounds)
            if flags.get("torso", "s5") == "s5":
                twins = profile(twin_parts, args.repeats, args.rounds, f"{label} twin critics")
        configs[label] = profile(parts, args.repeats, args.rounds, label)
        if label == "dqn_mamba --torso mlp":
            sizes = sample_against_size(
                agent, state, keys, args.buffer_sizes, args.rounds, args.repeats
            )
        del agent, state
    platform = jax.devices()[0].platform
    record = {
        "machine": machine_info(), "command": command(), "args": vars(args),
        "configs": configs, "twin_critics": twins, "sample_against_buffer_size": sizes,
        "total_seconds": time.perf_counter() - begin,
    }  # fmt: skip
    write_json(RESULTS / f"replay_profile_{platform}.json", record)
    markdown = report(record, platform)
    atomic_write(RESULTS / f"replay_profile_{platform}.md", markdown.encode())
    print(markdown)


def command() -> str:
    return " ".join(["python", "benchmarks/replay_profile.py", *sys.argv[1:]])


def report(record: dict, platform: str) -> str:
    machine, args = record["machine"], record["args"]
    lines = [
        f"# Off-policy replay: where a training round's time goes ({platform})",
        "",
        f"`{record['command']}`: each script's default flags, {args['num_seeds']} seeds vmapped "
        f"in each compiled call, from the state after warm-up; every part compiled on its own, "
        f"run for {args['rounds']} rounds' worth, median of {args['repeats']} runs after a first "
        f"one. Parts nest (indented rows are inside the row above), so shares do not add up to "
        f"1, and a part timed alone can cost more than inside the round, where XLA fuses it with "
        f'its neighbours; rows marked "not the script\'s" time what an avoidable cost would '
        f"leave. See the docstring of benchmarks/replay_profile.py for how each part is cut out.",
        "",
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, jax {machine['jax']}, "
        f"{machine['date']}; {record['total_seconds'] / 60:.1f} minutes in all.",
    ]
    for label, rows in record["configs"].items():
        lines += [
            "", f"## {label}", "",
            "| part | per round | ms per round | share of the round |", "|---|---|---:|---:|",
        ]  # fmt: skip
        for row in rows:
            share = row["share_of_round"]
            name = row["part"].replace("  ", "&nbsp;&nbsp;&nbsp;&nbsp;", 1)
            lines.append(
                f"| {name} | {row['per_round']} | {row['ms_per_round']:.2f} | "
                f"{'' if share is None else f'{share:.0%}'} |"
            )
        full_width = [r for r in rows if "gathers_full_width_carries" in r]
        if full_width:
            holds = "holds" if full_width[0]["gathers_full_width_carries"] else "does not hold"
            lines += ["", f"The compiled update step {holds} the sampled stored carries at full "
                      f"width [seeds, B, L, ...]."]  # fmt: skip
    if record["twin_critics"]:
        lines += [
            "", "## sac_s5: the twin critics, one forward pass over a replayed batch", "",
            "| applied as | ms per pass (all seeds) |", "|---|---:|",
        ]  # fmt: skip
        for row in record["twin_critics"]:
            lines.append(f"| {row['part']} | {row['ms_per_round']:.2f} |")
    if record["sample_against_buffer_size"]:
        lines += [
            "", "## One sample (dqn_mamba's sizes) against buffer size", "",
            "| buffer size | uniform (ms) | prioritised (ms) |", "|---:|---:|---:|",
        ]  # fmt: skip
        by_size: dict[int, dict[bool, float]] = {}
        for row in record["sample_against_buffer_size"]:
            by_size.setdefault(row["buffer_size"], {})[row["prioritised"]] = row["ms_per_round"]
        for size, ms in by_size.items():
            lines.append(f"| {size:,} | {ms[False]:.2f} | {ms[True]:.2f} |")
    if set(record["configs"]) == set(CONFIGS) and len(by_size) > 1:
        lines += ["", "## Conclusions", "", conclusions(record)]
    return "\n".join(lines) + "\n"


def conclusions(record: dict) -> str:
    """Where the time goes and the candidate avoidable costs by size, from the measured numbers."""
    configs = record["configs"]

    def row(label: str, start: str) -> dict:  # the first part of ``label`` named ``start...``
        return next(r for r in configs[label] if r["part"].startswith(start))

    def ms(label: str, start: str) -> float:
        return row(label, start)["ms_per_round"]

    def share(value: float, label: str) -> str:
        return f"{value / ms(label, WHOLE_ROUND):.0%} of its round"

    dqn, sac, prioritised = "dqn_mamba", "sac_s5", "dqn_mamba --prioritised"
    dqn_round, sac_round = ms(dqn, WHOLE_ROUND), ms(sac, WHOLE_ROUND)
    where = (
        f"In dqn_mamba the update step is {ms(dqn, 'update step') / dqn_round:.0%} of the round "
        f"({dqn_round:.0f} ms), its loss and gradient alone "
        f"{ms(dqn, LOSS_AND_GRADIENT) / dqn_round:.0%}, and acting with its buffer adds "
        f"{ms(dqn, 'acting') / dqn_round:.0%}; --torso mlp runs a round in "
        f"{ms('dqn_mamba --torso mlp', WHOLE_ROUND):.0f} ms. In sac_s5 the two update steps are "
        f"{ms(sac, 'update step') / sac_round:.0%} of the round ({sac_round:.0f} ms): soft targets "
        f"{ms(sac, 'soft targets') / sac_round:.0%}, critic loss and gradient "
        f"{ms(sac, 'critic loss') / sac_round:.0%}, actor loss and gradient "
        f"{ms(sac, 'actor loss') / sac_round:.0%}, acting {ms(sac, 'acting') / sac_round:.0%} "
        f"(--torso mlp: {ms('sac_s5 --torso mlp', WHOLE_ROUND):.0f} ms)."
    )
    sizes = sorted({r["buffer_size"] for r in record["sample_against_buffer_size"]})
    sample = {
        (r["buffer_size"], r["prioritised"]): r["ms_per_round"]
        for r in record["sample_against_buffer_size"]
    }
    slope = (sample[sizes[-1], True] - sample[sizes[0], True]) / (sizes[-1] - sizes[0])
    buffer_size = dqn_mamba.DQNConfig().buffer_size
    twin = {r["part"]: r["ms_per_round"] for r in record["twin_critics"]}
    passes = 3 * sac_s5.SACConfig().updates_per_round  # targets, critic loss, actor loss

    def carries(label: str) -> float:  # what full width adds, where the update pays it
        if not row(label, "update step")["gathers_full_width_carries"]:
            return 0.0
        return ms(label, "sample (") - ms(label, START_ONLY_SAMPLE)

    candidates = [
        (carries(dqn), dqn, "dqn_mamba's stored carries gathered at full width"),
        (carries(sac), sac, "sac_s5's stored carries gathered at full width"),
        (ms(sac, SECOND_BURN_IN), sac, "the actor loss's second burn-in through both critics"),
        (slope * buffer_size, prioritised,
         f"the O(buffer) part of the prioritised sample at {buffer_size:,} slots"),
        ((twin[TWIN_CRITICS[0]] - twin[TWIN_CRITICS[2]]) * passes, sac,
         f"twin critics by vmap rather than one batched call (~{passes} passes a round)"),
    ]  # fmt: skip
    candidates.sort(key=lambda candidate: -candidate[0])
    ranked = "; ".join(
        f"{what} ({value:.1f} ms, {share(value, label)})"
        if value > 0
        else f"{what} (none measurable)"
        for value, label, what in candidates
    )
    prioritised_round = ms(prioritised, WHOLE_ROUND)
    parts_gap = sum(ms(prioritised, part) - ms(dqn, part) for part in ("acting", "update step"))
    held = {
        label: "holds" if row(label, "update step")["gathers_full_width_carries"] else "drops"
        for label in (dqn, sac)
    }
    return (
        f"{where} Of the candidate avoidable costs, largest first: {ranked}. "
        f"The compiled dqn_mamba update {held[dqn]} the full-width carries and sac_s5's "
        f"{held[sac]} them (where one drops them, XLA keeps only what carry[:, 0] reads); "
        f"gathering start carries only changes the whole update step by "
        f"{ms(dqn, START_ONLY_UPDATE) - ms(dqn, 'update step'):+.1f} ms and "
        f"{ms(sac, START_ONLY_UPDATE) - ms(sac, 'update step'):+.1f} ms a round. "
        f"A prioritised sample grows from {sample[sizes[0], True]:.2f} to "
        f"{sample[sizes[-1], True]:.2f} ms from {sizes[0]:,} to {sizes[-1]:,} slots (uniform: "
        f"{sample[sizes[0], False]:.2f} to {sample[sizes[-1], False]:.2f} ms; its count of valid "
        f"starts is a cumulative sum over the buffer too): O(buffer) sampling is real, and "
        f"{'small' if slope * buffer_size < 0.05 * prioritised_round else 'large'} beside the "
        f"prioritised round, which takes {prioritised_round:.0f} ms against the uniform "
        f"{dqn_round:.0f} ms while its acting and update step together differ by "
        f"{parts_gap:+.1f} ms: the rest of that gap lies outside the parts timed here."
    )


if __name__ == "__main__":
    main()
