"""results.csv reads back exactly with pandas; `python -m memorax.plot` compares run folders."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas
import pytest

from memorax import plot
from memorax.tables import write_long_csv

ROUND_STEPS = np.array([256, 512, 768, 1024, 1280])
EVAL_STEPS = np.array([512, 1024, 1280])
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reference_iqm(values) -> float:
    ordered = sorted(float(value) for value in values)
    cut = len(ordered) // 4
    kept = ordered[cut : len(ordered) - cut]
    return sum(kept) / len(kept)


def write_run(parent: Path, name: str, runs: list[dict], seed: int) -> dict:
    """A run folder with a synthetic results.csv; returns the arrays written."""
    rng = np.random.default_rng(seed)
    num = len(runs)
    arrays = {
        "metrics": {
            "loss": rng.standard_normal((num, ROUND_STEPS.size)).astype(np.float32),
            "finite": rng.random((num, ROUND_STEPS.size)) > 0.2,
            "updates": np.tile(np.arange(ROUND_STEPS.size), (num, 1)),
        },
        "eval_returns": rng.uniform(0, 500, (num, EVAL_STEPS.size)),
    }
    arrays["metrics"]["loss"][0, 1] = np.nan
    arrays["eval_returns"][-1, -1] = np.nan  # the last seed diverged before the end
    write_long_csv(
        parent / name / "results.csv",
        name,
        runs,
        ROUND_STEPS,
        arrays["metrics"],
        EVAL_STEPS,
        arrays["eval_returns"],
    )
    return arrays


@pytest.fixture
def single(tmp_path):
    runs = [{"config": 0, "seed": seed} for seed in range(5)]
    arrays = write_run(tmp_path, "ppo_rnn-CartPole-P-v1-gru-1", runs, seed=0)
    return tmp_path / "ppo_rnn-CartPole-P-v1-gru-1", runs, arrays


@pytest.fixture
def sweep(tmp_path):
    runs = [
        {"config": config, "seed": seed, "learning_rate": rate, "hidden": hidden}
        for config, (rate, hidden) in enumerate([(0.003, (64, 64)), (0.0001, (32,))])
        for seed in range(3)
    ]
    arrays = write_run(tmp_path, "ppo_rnn-CartPole-P-v1-sweep-1", runs, seed=1)
    return tmp_path / "ppo_rnn-CartPole-P-v1-sweep-1", runs, arrays


def test_results_csv_reads_back_exactly(single, sweep):
    for run_dir, runs, arrays in (single, sweep):
        frame = pandas.read_csv(run_dir / "results.csv")
        swept = [key for key in runs[0] if key not in ("config", "seed")]
        assert list(frame.columns) == [
            "run", "config", *swept, "seed", "env_steps", "metric", "value"
        ]  # fmt: skip
        assert set(frame.run) == {run_dir.name}
        named = {**arrays["metrics"], "eval_return": arrays["eval_returns"]}
        assert list(dict.fromkeys(frame.metric)) == list(named)
        for name, expected in named.items():
            steps = EVAL_STEPS if name == "eval_return" else ROUND_STEPS
            rows = frame[frame.metric == name]
            assert len(rows) == expected.size
            for row, entry in enumerate(runs):
                mine = rows[(rows.config == entry["config"]) & (rows.seed == entry["seed"])]
                assert mine.env_steps.tolist() == steps.tolist()
                for key in swept:
                    assert set(mine[key]) == {str(entry[key]) if key == "hidden" else entry[key]}
                # Each value reads back to the very number of its array's precision.
                values = mine.value.to_numpy().astype(expected.dtype if name != "finite" else int)
                np.testing.assert_array_equal(values, expected[row])
        if run_dir == single[0]:
            assert np.isnan(frame[frame.metric == "loss"].value.iloc[1])


def test_final_eval_return_pivots_to_rliables_shape(sweep):
    run_dir, runs, arrays = sweep
    frame = pandas.read_csv(run_dir / "results.csv")
    final = frame[(frame.metric == "eval_return") & (frame.env_steps == EVAL_STEPS[-1])]
    scores = {
        config: group.sort_values("seed").value.to_numpy()
        for config, group in final.groupby("config")
    }
    assert list(scores) == [0, 1]
    np.testing.assert_array_equal(scores[0], arrays["eval_returns"][:3, -1])
    np.testing.assert_array_equal(scores[1], arrays["eval_returns"][3:, -1])


def test_write_long_csv_refuses_arrays_that_do_not_fit(tmp_path):
    runs = [{"config": 0, "seed": 0}, {"config": 0, "seed": 1}]
    returns = np.zeros((2, EVAL_STEPS.size))
    with pytest.raises(ValueError, match=r"loss has shape \(2, 4\)"):
        write_long_csv(
            tmp_path / "r.csv",
            "r",
            runs,
            ROUND_STEPS,
            {"loss": np.zeros((2, 4))},
            EVAL_STEPS,
            returns,
        )
    with pytest.raises(ValueError, match="'config' and 'seed'"):
        write_long_csv(tmp_path / "r.csv", "r", [{"seed": 0}], ROUND_STEPS, {}, EVAL_STEPS, returns)
    assert not (tmp_path / "r.csv").exists()


def table_rows(text: str) -> dict[str, list[str]]:
    """The printed Markdown table's body rows by label."""
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows[1:]}


def test_plot_prints_the_iqm_table_and_writes_a_png(single, sweep, tmp_path, capsys):
    output = tmp_path / "compare.png"
    plot.main([str(single[0]), str(sweep[0]), "--output", str(output)])
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    final_single = single[2]["eval_returns"][:, -1]
    final_sweep = sweep[2]["eval_returns"][:, -1]
    expected = {  # label -> (seeds, final IQM over the finite seeds)
        single[0].name: ("4 of 5", reference_iqm(final_single[:4])),
        f"{sweep[0].name} learning_rate=0.003 hidden=(64, 64)": (
            "3",
            reference_iqm(final_sweep[:3]),
        ),
        f"{sweep[0].name} learning_rate=0.0001 hidden=(32,)": (
            "2 of 3",
            reference_iqm(final_sweep[3:5]),
        ),
    }
    assert set(rows) == set(expected)
    iqms = []
    for label, (seeds, iqm) in expected.items():
        row_seeds, steps, value = rows[label]
        assert (row_seeds, steps) == (seeds, str(EVAL_STEPS[-1]))
        shown, interval = value.split(" [")
        low, high = (float(x) for x in interval.rstrip("]").split(", "))
        assert shown == f"{iqm:.4g}"
        assert low <= float(shown) <= high
        iqms.append((iqm, label))
    assert list(rows) == [label for _, label in sorted(iqms, reverse=True)]  # highest first
    assert output.read_bytes().startswith(PNG_SIGNATURE)
    assert f"wrote {output}" in printed


def test_plot_of_another_metric_and_plot_lines(single, tmp_path, capsys):
    output = tmp_path / "loss.png"
    plot.main([str(single[0]), "--metric", "loss", "--output", str(output), "--title", "loss"])
    assert "final loss, IQM [95% CI]" in capsys.readouterr().out
    assert output.read_bytes().startswith(PNG_SIGNATURE)
    lines = [("a", ROUND_STEPS, single[2]["metrics"]["loss"]), ("b", EVAL_STEPS, np.ones((2, 3)))]
    path = plot.plot_lines(tmp_path / "lines.png", lines, title="t", ylabel="loss")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_refuses_bad_input_in_one_line(single, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        str(tmp_path / "missing"): "is not a folder",
        str(empty): "has no results.csv",
    }
    for folder, problem in cases.items():
        with pytest.raises(SystemExit) as refused:
            plot.main([folder, "--output", str(tmp_path / "x.png")])
        assert str(refused.value).startswith(f"error: {folder} {problem}")
    with pytest.raises(SystemExit, match="has no metric 'nope' \\(it has: loss, finite"):
        plot.main([str(single[0]), "--metric", "nope"])
    assert not (tmp_path / "x.png").exists()


def test_plot_module_exits_non_zero_with_one_line(tmp_path):
    missing = tmp_path / "missing"
    result = subprocess.run(
        [sys.executable, "-m", "memorax.plot", str(missing)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip() == f"error: {missing} is not a folder"
