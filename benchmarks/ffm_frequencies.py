"""Why --torso ffm learns RepeatPreviousEasy slowly (0.43 in the POPGym table at 500k steps, where
GRU, LSTM, LRU, S5 and Mamba reach 1.00): its starting frequencies.

FFM's authors start omega at 2 pi / linspace(1, 1024, c): the first context channel turns by 2 pi
a step (no turn at all), the others by less than 0.02 rad, so at first every context channel of a
memory channel holds nearly the same sum and lags differ only by decay. Two measurements:

    python benchmarks/ffm_frequencies.py probe       # supervised: output the input of k steps ago
    python benchmarks/ffm_frequencies.py ppo         # the table's RepeatPreviousEasy row, spread

``probe`` trains each torso (width 128, one layer, a dense layer before and a linear read-out
after) to name the suit shown ``--lag`` steps ago in a stream of random suits (RepeatPrevious's
memory, without RL), with Adam, and prints the accuracy along the way: gru, lru, ffm (the
authors' start) and ffm with ``frequencies="spread"`` (omega from 0 to pi).
``--torsos`` probes any torsos of the zoo instead (``--torsos attention attention_rope`` shows why
ALiBi attention fails RepeatPreviousEasy: attention_repeat_previous_easy.md), ``--num-layers``
as deep as ``--num-layers`` builds them (minGRU: mingru_repeat_previous_easy.md).
``--lag 0`` asks for the first suit at every step of 52 (RepeatFirst's memory), ``--start-flag``
with a flag marking the first step in the input, as POPGym's protocol gives the policy.
``ppo`` runs the POPGym table's row (benchmarks/popgym.py's flags: RepeatPreviousEasy, 4 seeds,
500,000 env steps, --use-prev-action --use-reset-flag) with FFM's spread frequencies; extra
arguments go to ppo_rnn (e.g. --env-id RepeatFirstEasy, --total-timesteps 2000000).
Results: benchmarks/results/popgym/ffm_repeat_previous_easy.md.
"""

import argparse
import functools
import runpy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITS = 4


def probe(
    lag: int,
    steps: int,
    seeds: int,
    names: list[str] | None = None,
    flag: bool = False,
    length: int = 32,
    batch: int = 64,
    num_layers: int = 1,
) -> None:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from memorax.networks.sequence_models import FFM
    from memorax.networks.sequence_models.base import initialize_carry_of
    from memorax.networks.torsos import make_torso

    width = 128
    length = 52 if lag == 0 else length
    torsos = {
        "gru": lambda: make_torso("gru", width),
        "lru": lambda: make_torso("lru", width),
        "ffm (the authors' frequencies)": lambda: make_torso("ffm", width),
        'ffm, frequencies="spread"': lambda: FFM(hidden_dim=width, frequencies="spread"),
    }
    if names:  # any torso of the zoo instead, as --torso builds it
        torsos = {name: functools.partial(make_torso, name, width, num_layers) for name in names}

    class Net(nn.Module):
        torso: nn.Module

        @nn.compact
        def __call__(self, x, reset, carry):
            _, h = self.torso(nn.relu(nn.Dense(width)(x)), reset, carry)
            return nn.Dense(SUITS)(h)

    def stream(key):
        suits = jax.random.randint(key, (batch, length), 0, SUITS)
        if lag == 0:  # RepeatFirst's memory: 52 cards, each step marked first or not
            start = jnp.zeros((batch, length, 1)).at[:, 0].set(1.0 if flag else 0.0)
            return jnp.concatenate([jax.nn.one_hot(suits, SUITS), start], -1), suits
        return jax.nn.one_hot(suits, SUITS), suits

    reset = jnp.zeros((batch, length), bool).at[:, 0].set(True)
    marks = sorted({m for m in (100, 250, 500, 1000, 2000, steps) if m <= steps})
    print("| torso | seed | " + " | ".join(f"accuracy at {m}" for m in marks) + " |")
    print("|---|---:|" + "---:|" * len(marks))
    for name, build in torsos.items():
        for seed in range(seeds):
            torso = build()
            net, carry = Net(torso), initialize_carry_of(torso, batch)
            params = net.init(jax.random.key(seed), stream(jax.random.key(99))[0], reset, carry)
            optimiser = optax.adam(1e-3)
            state = optimiser.init(params)

            def loss(p, key, net=net, carry=carry):
                x, suits = stream(key)
                if lag == 0:  # name the first suit at every step
                    logits, target = (
                        net.apply(p, x, reset, carry),
                        jnp.broadcast_to(suits[:, :1], suits.shape),
                    )
                else:
                    logits, target = net.apply(p, x, reset, carry)[:, lag:], suits[:, :-lag]
                ce = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
                return ce, (logits.argmax(-1) == target).mean()

            @jax.jit
            def step(p, s, key, loss=loss, optimiser=optimiser):
                (_, accuracy), grads = jax.value_and_grad(loss, has_aux=True)(p, key)
                updates, s = optimiser.update(grads, s, p)
                return optax.apply_updates(p, updates), s, accuracy

            key, seen, start = jax.random.key(1000 + seed), [], time.time()
            for i in range(1, steps + 1):
                key, draw = jax.random.split(key)
                params, state, accuracy = step(params, state, draw)
                if i in marks:
                    seen.append(f"{float(accuracy):.3f}")
            print(f"| {name} | {seed} | " + " | ".join(seen) + f" |  ({time.time() - start:.0f} s)")
            sys.stdout.flush()


def ppo(extra: list[str]) -> None:
    import memorax.networks.sequence_models as sequence_models

    # make_torso imports FFM from memorax.networks.sequence_models when it builds --torso ffm.
    sequence_models.FFM = functools.partial(sequence_models.FFM, frequencies="spread")
    task = [] if "--env-id" in extra else ["--env-id", "RepeatPreviousEasy"]
    sys.argv = [
        "ppo_rnn.py", *task, "--torso", "ffm", "--num-seeds", "4", "--total-timesteps", "500000",
        "--use-prev-action", "--use-reset-flag", *extra,
    ]  # fmt: skip
    runpy.run_path(str(REPO / "algorithms" / "ppo_rnn.py"), run_name="__main__")


if __name__ == "__main__":
    from memorax.networks.torsos import TORSO_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("probe", "ppo"))
    parser.add_argument(
        "--lag",
        type=int,
        default=4,
        help="probe: steps back (RepeatPrevious: 4; 0: the first suit)",
    )
    parser.add_argument(
        "--start-flag", action="store_true", help="probe, --lag 0: mark the first step in the input"
    )
    parser.add_argument("--steps", type=int, default=2000, help="probe: Adam steps")
    parser.add_argument("--seeds", type=int, default=2, help="probe: seeds per torso")
    parser.add_argument(
        "--torsos",
        nargs="+",
        choices=TORSO_NAMES,
        help="probe: these torsos instead (--torso names)",
    )
    parser.add_argument(
        "--num-layers", type=int, default=1, help="probe, with --torsos: layers of each torso"
    )
    args, rest = parser.parse_known_args()
    if args.mode == "probe":
        if rest:
            parser.error(f"unrecognised arguments: {' '.join(rest)}")
        if args.start_flag and args.lag != 0:
            parser.error("--start-flag marks the first step for --lag 0; drop it or add --lag 0")
        if args.num_layers != 1 and not args.torsos:
            parser.error("--num-layers builds the --torsos torsos; name them with --torsos")
        probe(
            args.lag, args.steps, args.seeds, args.torsos, args.start_flag,
            num_layers=args.num_layers,
        )  # fmt: skip
    else:
        ppo(rest)
