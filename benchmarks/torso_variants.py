"""Diagnostics for the POPGym table: run any script with the torsos that make_torso builds changed
in one respect, so that a table row can be compared with and without it, nothing else changed.

    python benchmarks/torso_variants.py --mlstm-conv 4 algorithms/ppo_rnn.py \\
        --env-id RepeatPreviousEasy --torso mlstm --num-seeds 4 --total-timesteps 500000 \\
        --use-prev-action --use-reset-flag
    python benchmarks/torso_variants.py --mlstm-conv 4 benchmarks/ffm_frequencies.py probe \\
        --torsos mlstm
    python benchmarks/torso_variants.py --deltanet-conv 4 benchmarks/ffm_frequencies.py probe \\
        --torsos gated_deltanet
    python benchmarks/torso_variants.py --residual-cells algorithms/ppo_rnn.py \\
        --env-id BattleshipEasy --torso gru ...

--mlstm-conv K gives every mLSTM layer the xLSTM block's causal convolution of width K before
its query and key (MLSTM.conv_kernel; `--torso mlstm` has none); --deltanet-conv K gives every
DeltaNet and Gated DeltaNet layer the papers' short convolution of width K before q, k and v
(DeltaNet.conv_kernel; `--torso deltanet` and `gated_deltanet` have none). --residual-cells puts
each layer of a recurrent cell (gru, lstm, mgu, elman, indrnn), which --torso stacks as plain
layers, in the pre-norm residual block the parallel models stack with (x + layer(LayerNorm(x))),
after a linear projection of the input to the layers' width (as MemoroidTorso projects it); --drop
norm leaves the skip alone (x + layer(x)), --drop skip the LayerNorm alone (layer(LayerNorm(x))),
and both the projection alone (plain layers after it). The script after the options runs as its
own `__main__` with its flags. Findings:
benchmarks/results/popgym/mlstm_repeat_previous_easy.md, gated_deltanet_repeat_previous_easy.md
and cell_memory_init.md.
"""

import argparse
import functools
import runpy
import sys

import flax.linen as nn

from memorax.networks import sequence_models, torsos


def residual_cells(make_torso, skip: bool = True, norm: bool = True):
    """make_torso with each recurrent cell layer after a projection of the input to its width, in
    a pre-norm residual block; ``skip`` and ``norm`` False leave out its skip or its LayerNorm."""

    @functools.wraps(make_torso)
    def make(name: str, hidden_size: int, num_layers: int = 1, *args, **kwargs):
        if name not in torsos.RECURRENT_CELLS:
            return make_torso(name, hidden_size, num_layers, *args, **kwargs)
        from memorax.networks.blocks import PreNorm, Residual, Stack

        cell = torsos.RECURRENT_CELLS[name]
        # The input projected to the layers' width first, as MemoroidTorso does.
        layers: list[nn.Module] = [nn.Dense(hidden_size)]
        for _ in range(num_layers):
            layer = sequence_models.RNN(cell(features=hidden_size))
            layer = PreNorm(layer) if norm else layer
            layers.append(Residual(layer) if skip else layer)
        return Stack(blocks=layers)

    return make


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlstm-conv", type=int, default=0, metavar="K", help="conv width (K>=0)")
    parser.add_argument(
        "--deltanet-conv", type=int, default=0, metavar="K", help="conv width (K>=0)"
    )
    parser.add_argument("--residual-cells", action="store_true")
    parser.add_argument(
        "--drop",
        action="append",
        choices=["skip", "norm"],
        default=[],
        help="with --residual-cells: leave this part out of the block (may repeat)",
    )
    parser.add_argument("script", help="the script to run, e.g. algorithms/ppo_rnn.py")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="the script's own flags")
    args = parser.parse_args()
    for flag in ("mlstm_conv", "deltanet_conv"):
        if getattr(args, flag) < 0:
            name = "--" + flag.replace("_", "-")
            parser.error(f"{name} takes a width of 0 (none) or more, not {getattr(args, flag)}")
    if args.drop and not args.residual_cells:
        parser.error("--drop leaves a part out of --residual-cells' block: add --residual-cells")
    # make_torso imports MLSTM from memorax.networks.sequence_models when it builds --torso mlstm.
    sequence_models.MLSTM = functools.partial(sequence_models.MLSTM, conv_kernel=args.mlstm_conv)
    for name in ("DeltaNet", "GatedDeltaNet"):  # imported by make_torso in the same way
        model = getattr(sequence_models, name)
        setattr(sequence_models, name, functools.partial(model, conv_kernel=args.deltanet_conv))
    if args.residual_cells:
        # The scripts import make_torso from memorax.networks.torsos when they run.
        torsos.make_torso = residual_cells(
            torsos.make_torso, skip="skip" not in args.drop, norm="norm" not in args.drop
        )
    print(
        f"mlstm conv_kernel={args.mlstm_conv}, deltanet conv_kernel={args.deltanet_conv}, "
        f"residual cells: {args.residual_cells}"
        + (f" without {' or '.join(args.drop)}" if args.drop else ""),
        flush=True,
    )
    sys.argv = [args.script, *args.flags]
    runpy.run_path(args.script, run_name="__main__")
