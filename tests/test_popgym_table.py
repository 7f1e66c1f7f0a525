"""benchmarks/popgym.py: refuses what it does not know before training, and its table is the
statistics of the returns it wrote."""

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean

from benchmarks import popgym


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--tasks", "RepeatFrist"],
            "--tasks 'RepeatFrist' is unknown (did you mean RepeatFirst?)",
        ),
        (["--tasks", "RepeatFirstEasy"], "--tasks 'RepeatFirstEasy' is unknown"),
        (
            ["--difficulty", "Extreme"],
            "--difficulty 'Extreme' is unknown; valid: Easy, Medium, Hard",
        ),
        (["--torsos", "gruu"], "--torsos 'gruu' is unknown (did you mean gru?)"),
        (["--num-seeds", "0"], "--num-seeds"),
    ],
)
def test_refuses_before_training(argv, message, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        popgym.main([*argv, "--output", str(tmp_path / "out")])
    assert message in str(exit_.value)
    assert not (tmp_path / "out").exists()


def test_families_are_the_registered_popgym_tasks():
    assert {"RepeatFirst", "RepeatPrevious", "CountRecall", "Autoencode"} <= set(popgym.families())


def test_a_tiny_table_holds_the_statistics_of_its_returns(tmp_path):
    """Two rows (gru and its twin), 2 seeds, 2 rounds each."""
    argv = ["--tasks", "RepeatPrevious", "--torsos", "gru", "--num-seeds", "2"]
    argv += ["--total-timesteps", "4000", "--output", str(tmp_path)]
    popgym.main(argv)
    with (tmp_path / "returns.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["torso"], r["seed"]) for r in rows] == [
        ("gru", "0"), ("gru", "1"), ("mlp", "0"), ("mlp", "1"),
    ]  # fmt: skip
    assert all(r["task"] == "RepeatPrevious" and r["difficulty"] == "Easy" for r in rows)
    table = (tmp_path / "table.md").read_text()
    cells = re.search(r"\| RepeatPreviousEasy \| (.*) \| (.*) \|", table).groups()
    for torso, cell in zip(("gru", "mlp"), cells, strict=True):
        values = [float(r["final_return"]) for r in rows if r["torso"] == torso]
        assert min(values) >= -1.0 and max(values) <= 1.0  # POPGym's scale
        iqm = float(cell.split()[0])
        assert iqm == pytest.approx(trim_mean(values, 0.25), abs=0.005), (cell, values)
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert (tmp_path / "curves" / "RepeatPreviousEasy-gru.png").is_file()


def test_a_second_call_replaces_only_the_rows_it_ran(tmp_path, monkeypatch):
    import algorithms.ppo_rnn

    def fake_run(cfg):  # what run returns, without training: the seeds' returns are the torso's
        assert cfg.use_prev_action and cfg.use_reset_flag  # POPGym's baselines' protocol
        run_dir = Path(cfg.output_dir) / "run"
        run_dir.mkdir()
        (run_dir / "learning_curve.png").write_bytes(b"")
        value = {"gru": 0.5, "mlp": -0.5}[cfg.torso]
        return run_dir, {"final_eval_return_per_seed": [value] * cfg.num_seeds}

    monkeypatch.setattr(algorithms.ppo_rnn, "run", fake_run)
    argv = ["--tasks", "RepeatFirst", "--num-seeds", "2", "--output", str(tmp_path)]
    popgym.main([*argv, "--torsos", "gru"])
    rows = popgym.read_rows(tmp_path / "returns.csv")
    rows[0]["final_return"] = "0.123"  # gru's seed 0: must stay, mlp's rows must be re-run
    rows[2]["final_return"] = "0.456"
    popgym.write_rows(tmp_path / "returns.csv", rows)
    popgym.main([*argv, "--torsos", "mlp", "--rerun"])
    again = popgym.read_rows(tmp_path / "returns.csv")
    assert [(r["torso"], r["final_return"]) for r in again] == [
        ("gru", "0.123"), ("gru", "0.5"), ("mlp", "-0.5"), ("mlp", "-0.5"),
    ]  # fmt: skip
    assert (
        "| RepeatFirstEasy | 0.31 [0.12, 0.50] | -0.50 [-0.50, -0.50] |"
        in (tmp_path / "table.md").read_text()
    )


def test_the_same_command_resumes_and_popgym_names_are_ours(tmp_path, monkeypatch, capsys):
    """Rows already in returns.csv at the same budget and seeds are not trained again; a row at
    another budget is. POPGym's StatelessCartPole is our PositionOnlyCartPole."""
    import algorithms.ppo_rnn

    trained = []

    def fake_run(cfg):
        trained.append((cfg.env_id, cfg.torso, cfg.num_seeds))
        run_dir = Path(cfg.output_dir) / "run"
        run_dir.mkdir()
        (run_dir / "learning_curve.png").write_bytes(b"")
        return run_dir, {"final_eval_return_per_seed": [0.25] * cfg.num_seeds}

    monkeypatch.setattr(algorithms.ppo_rnn, "run", fake_run)
    argv = ["--tasks", "StatelessCartPole", "--torsos", "gru", "--output", str(tmp_path)]
    popgym.main([*argv, "--num-seeds", "2"])
    assert trained == [
        ("PositionOnlyCartPoleEasy", "gru", 2),
        ("PositionOnlyCartPoleEasy", "mlp", 2),
    ]
    popgym.main([*argv, "--num-seeds", "2", "--tasks", "PositionOnlyCartPole"])  # nothing to do
    assert len(trained) == 2
    assert (
        "already in returns.csv at this budget (--rerun trains it again)" in capsys.readouterr().out
    )
    popgym.main([*argv, "--num-seeds", "3"])  # another number of seeds: trained again, replaced
    assert trained[2:] == [
        ("PositionOnlyCartPoleEasy", "gru", 3),
        ("PositionOnlyCartPoleEasy", "mlp", 3),
    ]
    rows = popgym.read_rows(tmp_path / "returns.csv")
    assert [(r["task"], r["torso"], r["seed"]) for r in rows] == [
        ("PositionOnlyCartPole", torso, str(seed)) for torso in ("gru", "mlp") for seed in range(3)
    ]
    machine = rows[0]["machine"]
    assert machine and f"machine: {machine}; jax" in (tmp_path / "table.md").read_text()


def test_mean_row_is_the_mean_of_task_iqms(tmp_path):
    rows = [
        dict(task=task, difficulty="Easy", torso=torso, seed=seed, final_return=value,
             env_steps=1000, date="2026-11-27")
        for task, base in (("A", 0.5), ("B", -0.5))
        for torso, shift in (("gru", 0.25), ("mlp", 0.0))
        for seed, value in enumerate(base + shift + np.array([0.0, 0.1, 0.2, 0.9]))
    ]  # fmt: skip
    popgym.write_table(tmp_path, rows, {"cpu": "test", "cpu_count": 2, "jax": "0"})
    table = (tmp_path / "table.md").read_text()
    # IQM of (0, 0.1, 0.2, 0.9) + base + shift is base + shift + 0.15
    assert "| AEasy | 0.90 [" in table and "| BEasy | -0.10 [" in table
    assert "| mean over 2 tasks | 0.40 | 0.15 |" in table
    assert "tasks mlp ran" not in table  # complete: one mean row
    # a third task without gru: the complete mean stays over A and B, the twin's adds C
    rows += [dict(rows[-1], task="C", final_return=value) for value in (0.0, 0.0, 0.0, 0.0)]
    popgym.write_table(tmp_path, rows, {"cpu": "test", "cpu_count": 2, "jax": "0"})
    table = (tmp_path / "table.md").read_text()
    assert "| mean over 2 tasks | 0.40 | 0.15 |" in table
    assert "| mean over the 3 tasks mlp ran |  | 0.10 |" in table


def test_a_diverged_seed_is_named_in_its_cell_not_averaged_in_silently(tmp_path):
    """A diverged run's return is NaN: its cell's IQM is over the other seeds and says how many
    diverged, and a cell whose every seed diverged says so and has no IQM to average."""
    rows = [
        dict(task=task, difficulty="Easy", torso=torso, seed=seed, final_return=value,
             env_steps=1000, date="2026-12-03")
        for task in ("A", "B")
        for torso in ("framestack", "mlp")
        for seed, value in enumerate([0.1, 0.2, 0.3, 0.4])
    ]  # fmt: skip
    for row in rows:
        if row["torso"] == "framestack" and (row["task"] == "A" or row["seed"] == 3):
            row["final_return"] = float("nan")
    popgym.write_table(tmp_path, rows, {"cpu": "test", "cpu_count": 2, "jax": "0"})
    table = (tmp_path / "table.md").read_text()
    assert "| AEasy | diverged (4 of 4 seeds) | 0.25 [" in table
    # B's framestack cell: the IQM of (0.1, 0.2, 0.3), which is 0.2
    assert "| BEasy | 0.20 [0.10, 0.30], 1 of 4 seeds diverged | 0.25 [" in table
    assert "nan [" not in table and "| nan |" not in table
    # A has no framestack IQM: the first mean row is over B alone; the twin's row over both
    assert "| mean over 1 tasks | 0.20 | 0.25 |" in table
    assert "| mean over the 2 tasks mlp ran |  | 0.25 |" in table
    # The heatmap's cells say the same (an all-diverged cell is not left blank like a missing row)
    stats = popgym.summarise(rows)
    assert popgym.heatmap_label(*stats["A", "Easy", "framestack"]) == "diverged"
    assert popgym.heatmap_label(*stats["B", "Easy", "framestack"]) == "0.20\n1 of 4 diverged"
    assert popgym.heatmap_label(*stats["B", "Easy", "mlp"]) == "0.25"
