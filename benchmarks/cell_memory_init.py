"""Diagnostic for the sequential cells' POPGym rows: the same ppo_rnn row (the table's flags:
POPGym's protocol, 4 seeds, 500,000 env steps) with the cell's memory at initialisation made
longer, so that what the table's row lacks can be told from what the cell cannot do.

At flax's initialisation a GRU or LSTM step keeps sigmoid(0) = 1/2 of its carry (MGU sigmoid(1),
IndRNN u uniform on [0, 1]): a memory of a step or two until training lengthens it. The value
sets the gate's initial bias (GRU's update gate, LSTM's and MGU's forget gate) or IndRNN's lowest
initial u:

    python benchmarks/cell_memory_init.py gru 3 BattleshipEasy         # keeps sigmoid(3) = 0.95
    python benchmarks/cell_memory_init.py indrnn 0.9 RepeatFirstEasy   # u uniform on [0.9, 1]

Prints ppo_rnn's progress and final greedy IQM; findings are in
benchmarks/results/popgym/cell_memory_init.md.
"""

import argparse
import functools
import runpy
import sys
import tempfile
from pathlib import Path

from memorax.networks import torsos

REPO = Path(__file__).resolve().parents[1]
# The field of each cell that sets how much of the carry a step keeps at initialisation.
FIELDS = {
    "gru": "update_gate_bias",
    "lstm": "forget_gate_bias",
    "mgu": "forget_gate_bias",
    "indrnn": "recurrent_weight_min",
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("torso", choices=sorted(FIELDS))
    parser.add_argument("value", type=float, help="the gate's initial bias, or IndRNN's lowest u")
    parser.add_argument("env_id", help="a POPGym task, e.g. BattleshipEasy")
    parser.add_argument("--total-timesteps", default="500000")
    args = parser.parse_args()
    if args.torso == "indrnn" and not 0.0 <= args.value <= 1.0:
        parser.error(f"indrnn's value (its lowest initial u) must lie in [0, 1], not {args.value}")
    cell = torsos.RECURRENT_CELLS[args.torso]
    # make_torso builds RECURRENT_CELLS[name](features=...): the value rides along.
    torsos.RECURRENT_CELLS[args.torso] = functools.partial(cell, **{FIELDS[args.torso]: args.value})
    print(f"{args.torso} with {FIELDS[args.torso]}={args.value:g} on {args.env_id}", flush=True)
    with tempfile.TemporaryDirectory() as output:
        sys.argv = [
            "ppo_rnn.py", "--env-id", args.env_id, "--torso", args.torso, "--total-timesteps",
            args.total_timesteps, "--num-seeds", "4", "--use-prev-action", "--use-reset-flag",
            "--output-dir", output,
        ]  # fmt: skip
        runpy.run_path(str(REPO / "algorithms" / "ppo_rnn.py"), run_name="__main__")
