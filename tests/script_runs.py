"""Running a script as a user does (a subprocess), and the resume check every script must pass."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMING = ("compile_seconds", "run_seconds", "env_steps_per_second")


def cached_environment() -> dict[str, str]:
    """The environment for a script run as a subprocess that shares the test run's persistent
    compilation cache (tests/conftest.py): the resume check's stopped run writes the executables
    that its resumed run, in the test process, reads back (bit-equality with the straight run, a
    different program compiled on its own, is still tested). Reading the cache prints warnings
    to stderr, so the one-line refusals run without it."""
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": os.environ["MEMORAX_TEST_JAX_CACHE"],
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def script(name: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "algorithms" / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=timeout, cwd="/",
    )  # fmt: skip


def one_line_refusal(done: subprocess.CompletedProcess, *needles: str) -> None:
    """Refused in one line (no traceback, nothing compiled) that holds every needle."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "compiling" not in done.stdout
    shown = " ".join(done.stderr.replace("│", " ").split())  # tyro boxes and wraps its messages
    for needle in needles:
        assert needle in shown, done.stderr[-2000:]


def stopped_and_resumed(
    name: str, flags: list[str], every: str, tmp_path: Path, signum, monkeypatch, capsys
) -> Path:
    """Run ``name`` with ``flags`` twice: straight through (no checkpoints: training is one call),
    and with ``--checkpoint-every every`` stopped by a real ``signum`` right after its first
    checkpoint, then resumed. The stopped run, a process of its own, must exit 130 with the
    resume command, leave only complete files that --load refuses in one line, and, resumed, end
    with the same parameters, curves and summary as the straight run, bit for bit. The straight
    and the resumed runs are main() in this process (CI time: an interpreter and jax start-up
    less each; a new process per run is what the stopped run tests). Returns the straight run's
    folder."""
    code, _, err = main_in_process(
        name, [*flags, "--output-dir", str(tmp_path / "straight")], monkeypatch, capsys
    )
    assert code in (0, None), err[-3000:]
    stopped_dir = tmp_path / "stopped"
    command = [sys.executable, str(REPO / "algorithms" / f"{name}.py"), *flags]
    command += ["--checkpoint-every", every, "--output-dir", str(stopped_dir)]
    # stderr joins stdout, read as it comes: a pipe nobody drains fills up with jax's warnings
    # (one long line per executable read from the cache) and blocks the run mid-start.
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/",
                 env=cached_environment())  # fmt: skip
    with subprocess.Popen(command, **pipes) as run:
        for line in run.stdout:
            if line.startswith("checkpoint after evaluation period 1/"):
                run.send_signal(signum)
                break
        out, _ = run.communicate(timeout=240)
    (run_dir,) = stopped_dir.iterdir()
    assert run.returncode == 130, out[-3000:]
    assert f"python algorithms/{name}.py --resume {run_dir}" in out, out
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    states = [file for file in files if file.startswith("checkpoints/state-")]
    assert len(states) == 1, files  # the last complete checkpoint, nothing half written
    assert sorted(set(files) - set(states)) == [
        "checkpoints",
        "checkpoints/latest.json",
        "config.json",
    ], files
    # In this process (a refusal compiles nothing): an interpreter and jax start-up less.
    refused_in_one_line(name, ["--load", str(run_dir)], monkeypatch, capsys,
                        f"go on with --resume {run_dir}")  # fmt: skip
    code, out, err = main_in_process(name, ["--resume", str(run_dir)], monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    assert f"resuming {run_dir} after evaluation period" in out
    (straight_dir,) = (tmp_path / "straight").iterdir()
    assert (straight_dir / "checkpoint.msgpack").read_bytes() == (
        run_dir / "checkpoint.msgpack"
    ).read_bytes()
    configs = [json.loads((d / "config.json").read_text()) for d in (straight_dir, run_dir)]
    assert configs[0] == {
        **configs[1],
        "checkpoint_every": 0,
        "output_dir": str(tmp_path / "straight"),
    }
    with np.load(straight_dir / "curves.npz") as a, np.load(run_dir / "curves.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (straight_dir, run_dir)]
    for summary in summaries:
        for key in TIMING:
            summary.pop(key)
    assert summaries[0] == summaries[1]
    assert not (run_dir / "checkpoints").exists()  # dropped once the results are written
    return straight_dir


def main_in_process(name: str, args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``name``'s main() with ``args`` in this process (no interpreter and jax start-up: for
    refusals, which never compile); returns (exit status, stdout, stderr) as the process would
    have them. Anything but a SystemExit propagates: a traceback fails the test."""
    module = importlib.import_module(f"algorithms.{name}")
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
    try:
        module.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # SystemExit("error: ...") prints its message and exits 1
        code, err = 1, err + code + "\n"
    return code, out, err


def refused_in_one_line(name: str, args: list[str], monkeypatch, capsys, *needles: str) -> str:
    """main() exits non-zero before compiling, its stderr holding every needle; returns it."""
    code, out, err = main_in_process(name, args, monkeypatch, capsys)
    assert code not in (0, None), out[-2000:]
    assert "compiling" not in out
    shown = " ".join(err.replace("│", " ").split())  # tyro boxes and wraps its messages
    for needle in needles:
        assert needle in shown, err[-2000:]
    return err
