"""benchmarks/gpu.py at --tiny sizes on the CPU, as a user runs it: every part is written to the
JSON and the Markdown, with the device's name and finite positive numbers; a bad flag is refused in
one line before anything runs."""

import json
import math
import os
import re
import subprocess
import sys

import jax
import pytest

from benchmarks import gpu
from tests.script_runs import REPO

# What --tiny measures (benchmarks/gpu.py's TINY).
SEEDS, TORSOS = gpu.TINY["ppo_seeds"], gpu.TINY["ppo_torsos"]
MODELS, LENGTHS = gpu.TINY["sequence_models"], gpu.TINY["sequence_lengths"]
OFF_POLICY_SEEDS = gpu.TINY["off_policy_seeds"]


def positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_a_tiny_run_writes_every_part_with_finite_positive_figures(tmp_path):
    # Nothing here is a measurement and compiling is nearly all of its time: compile less.
    env = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    command = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--tiny"]
    done = subprocess.run(
        [*command, "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    device = jax.devices()[0].device_kind
    slug = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"gpu_{slug}.json", f"gpu_{slug}.md"]
    record = json.loads((tmp_path / f"gpu_{slug}.json").read_text())
    markdown = (tmp_path / f"gpu_{slug}.md").read_text()
    assert record["device"] == device and device in markdown
    assert record["jax"] == jax.__version__ and record["date"]
    assert record["skipped"] == [] and record["errors"] == []
    assert list(record["parts"]) == ["ppo", "sequence", "off-policy"]

    ppo = record["parts"]["ppo"]["rows"]
    assert [(row["torso"], row["num_seeds"]) for row in ppo] == [
        (torso, seeds) for torso in TORSOS for seeds in SEEDS
    ]
    off_policy = record["parts"]["off-policy"]["rows"]
    assert [(row["script"], row["num_seeds"]) for row in off_policy] == [
        (script, seeds) for script in ("dqn_mamba", "sac_s5") for seeds in OFF_POLICY_SEEDS
    ]
    for row in ppo + off_policy:
        assert row["finite"] is True
        for key in ("compile_seconds", "median_run_seconds", "env_steps_per_second"):
            assert positive(row[key]), (key, row)
        assert row["env_steps_per_second"] == row["env_steps"] / row["median_run_seconds"]
        assert f"{row['env_steps_per_second']:,.0f}" in markdown

    sequence = record["parts"]["sequence"]
    assert list(sequence["results"]) == MODELS
    for name, points in sequence["results"].items():
        assert [point["length"] for point in points] == LENGTHS, name
        assert all(positive(p["seconds"]) and positive(p["memory_bytes"]) for p in points)
    parallel = [name for name in MODELS if name != "gru"]
    assert list(sequence["overtakes_gru_from_length"]) == parallel
    assert sequence["ratio_length"] == max(LENGTHS)
    assert all(positive(sequence["gru_time_over_model_time"][name]) for name in parallel)
    for heading in ("## ppo_rnn", "## Sequence models", "## dqn_mamba and sac_s5"):
        assert heading in markdown


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--ppo-seeds", "1", "0"], "--ppo-seeds ([1, 0]) must be at least 1"),
        (["--repeats", "0"], "--repeats (0) must be at least 1"),
        (["--parts", "train"], "argument --parts: invalid choice: 'train'"),
        (["--tiny", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_flag_is_refused_in_one_line(args, needle, capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu.main(args)
    assert exit_.value.code != 0
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err


def test_points_after_the_time_limit_are_listed_as_skipped(tmp_path, capsys):
    gpu.main(["--tiny", "--time-limit", "1e-9", "--output-dir", str(tmp_path)])
    (json_path,) = tmp_path.glob("gpu_*.json")
    record = json.loads(json_path.read_text())
    assert record["skipped"][0] == f"ppo_rnn {TORSOS[0]} x {SEEDS[0]} seeds"
    points = len(TORSOS) * len(SEEDS) + len(MODELS) * len(LENGTHS) + 2 * len(OFF_POLICY_SEEDS)
    assert len(record["skipped"]) == points
    assert record["parts"]["ppo"]["rows"] == [] and record["errors"] == []
    markdown = json_path.with_suffix(".md").read_text()
    assert f"- {record['skipped'][-1]}: skipped, --time-limit reached" in markdown
