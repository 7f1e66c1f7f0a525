"""Diagnostic for --torso gtrxl's CartPole-P row (155 [96, 500] at 500k steps, 4 seeds): the same
run with GTrXL's gate bias b_g (``GatedResidual.gate_bias``, 2 by default as in common GTrXL
implementations) set to another value, so the gate no longer starts near the identity.

    python benchmarks/gtrxl_gate_bias.py 0      # the learning row's flags, b_g = 0

The row's flags (benchmarks/learning.py: CartPole-P-v1, 500,000 env steps, 4 seeds, default
flags otherwise); its summary and curve go to benchmarks/results/ppo_learning/diagnostics/.
Measured 2026-12-02 (2 Intel Xeon cores): b_g = 0 reaches 500 [442, 500] (per seed 500, 500,
442, 500), kept as diagnostics/CartPole-P-v1-gtrxl-gate_bias0.json and .png.
"""

import functools
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

import memorax.networks.blocks as blocks

REPO = Path(__file__).resolve().parents[1]
DIAGNOSTICS = REPO / "benchmarks" / "results" / "ppo_learning" / "diagnostics"

if __name__ == "__main__":
    bias = float(sys.argv[1])
    # make_torso imports GatedResidual from memorax.networks.blocks when it builds gtrxl.
    blocks.GatedResidual = functools.partial(blocks.GatedResidual, gate_bias=bias)
    with tempfile.TemporaryDirectory() as output:
        sys.argv = [
            "ppo_rnn.py", "--env-id", "CartPole-P-v1", "--torso", "gtrxl", "--total-timesteps",
            "500000", "--num-seeds", "4", "--output-dir", output,
        ]  # fmt: skip
        runpy.run_path(str(REPO / "algorithms" / "ppo_rnn.py"), run_name="__main__")
        (run,) = Path(output).iterdir()
        DIAGNOSTICS.mkdir(parents=True, exist_ok=True)
        name = f"CartPole-P-v1-gtrxl-gate_bias{bias:g}"
        shutil.copyfile(run / "summary.json", DIAGNOSTICS / f"{name}.json")
        shutil.copyfile(run / "learning_curve.png", DIAGNOSTICS / f"{name}.png")
