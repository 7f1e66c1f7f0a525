"""--track: what TensorBoard and W&B (offline) hold after a run, read back with readers that are
not the writers, and the early errors for a missing package or an unknown tracker."""

import json
import math
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from memorax import tracking
from memorax.tracking import check_tracker, open_tracker, run_labels

CONFIG = {"script": "ppo_rnn", "env_id": "MemoryChain-bsuite", "learning_rate": 0.01, "seed": 0}
SWEEP = [
    {"config": 0, "seed": 0, "learning_rate": 0.001},
    {"config": 1, "seed": 0, "learning_rate": 0.003},
]


def _loss(run: int, step: int) -> float:
    """Exact in float32, which is what TensorBoard stores."""
    return 0.25 * step + run


def _return(run: int, step: int) -> float:
    return math.nan if step == 20 else 100.0 * run - step


def _log_concurrently(tracker, jobs) -> None:
    """Run each job (a list of tracker.log arguments) in its own thread, all started together."""
    barrier = threading.Barrier(len(jobs))

    def work(calls):
        barrier.wait()
        for call in calls:
            tracker.log(*call)

    threads = [threading.Thread(target=work, args=(calls,)) for calls in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _assert_same(got: dict, expected: dict) -> None:
    """Equal dicts of floats where NaN equals NaN."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key


def test_run_labels():
    assert run_labels([{"config": 0, "seed": 0}, {"config": 0, "seed": 1}]) == ["seed0", "seed1"]
    assert run_labels(SWEEP) == ["config0-seed0", "config1-seed0"]
    # one config, but a swept value is named: still labelled by config
    assert run_labels([{"config": 0, "seed": 2, "learning_rate": 0.1}]) == ["config0-seed2"]
    with pytest.raises(ValueError, match="distinct"):
        run_labels([{"config": 0, "seed": 0}, {"config": 0, "seed": 0}])


def test_tensorboard_writes_each_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    steps = [0, 10, 20, 30]
    with open_tracker("tensorboard", tmp_path, "ppo_rnn", CONFIG, SWEEP) as tracker:
        assert tracker.where == f"tensorboard --logdir {tmp_path / 'tensorboard'}"
        # one thread per metric, each writing both runs, as two callbacks could
        _log_concurrently(
            tracker,
            [
                [(run, step, {"train/loss": _loss(run, step)}) for step in steps for run in (0, 1)],
                [
                    (run, step, {"eval/return": _return(run, step)})
                    for step in steps
                    for run in (0, 1)
                ],
            ],
        )
    tracker.close()  # idempotent

    for run, label in enumerate(["config0-seed0", "config1-seed0"]):
        events = EventAccumulator(
            str(tmp_path / "tensorboard" / label), size_guidance={"scalars": 0, "tensors": 0}
        ).Reload()
        assert sorted(events.Tags()["scalars"]) == ["eval/return", "train/loss"]
        for tag, expected in [("train/loss", _loss), ("eval/return", _return)]:
            scalars = events.Scalars(tag)
            assert [scalar.step for scalar in scalars] == steps
            _assert_same(
                {scalar.step: scalar.value for scalar in scalars},
                {step: expected(run, step) for step in steps},
            )

        (text,) = events.Tensors("config/text_summary")
        markdown = text.tensor_proto.string_val[0].decode()
        assert markdown.startswith("```json\n") and markdown.endswith("\n```")
        assert json.loads(markdown[len("```json") : -len("```")]) == {**CONFIG, **SWEEP[run]}

        hparams = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            hparams["_hparams_/session_start_info"]
        ).session_start_info
        assert start.hparams["learning_rate"].number_value == SWEEP[run]["learning_rate"]
        assert start.hparams["env_id"].string_value == CONFIG["env_id"]
        end = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_end_info"])
        assert end.session_end_info.status == api_pb2.STATUS_SUCCESS


def _wandb_records(path: Path):
    """The protobuf Records of a .wandb file: LevelDB's log format (32 KiB blocks of chunks,
    each a CRC-32 of its type and data, a length and a type) after a 7-byte W&B header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00"
    position, chunks = 7, []
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a header is padding
            position += 32768 - position % 32768
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:  # zero padding
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum
        chunks.append(chunk)
        if kind in (1, 4):  # a full record, or a record's last chunk
            yield wandb_internal_pb2.Record.FromString(b"".join(chunks))
            chunks = []


def _read_wandb_run(run_dir: Path, name: str) -> dict:
    """The run record, history {step: values} and exit code of the offline run called ``name``.

    wandb-core writes the files from its own process and may still be writing them when
    ``run.finish()`` returns (seen: a file read then held no run record, about 1 in 6 times on a
    busy 2-core machine). A user reads them after the process exits, when W&B's exit hook,
    ``wandb.teardown()``, has waited for them; the test does the same before reading."""
    import wandb

    wandb.teardown()
    for path in run_dir.glob("wandb/offline-run-*/run-*.wandb"):
        records = list(_wandb_records(path))
        (run,) = [record.run for record in records if record.HasField("run")]
        if run.display_name != name:
            continue
        history = {}
        for record in records:
            if record.HasField("history"):
                # wandb-core fills key or nested_key; its own entries start with "_"
                values = {
                    item.key or ".".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
                history[record.history.step.num] = {
                    name: value for name, value in values.items() if not name.startswith("_")
                }
        (exit_record,) = [record.exit for record in records if record.HasField("exit")]
        return {"run": run, "history": history, "exit_code": exit_record.exit_code}
    raise AssertionError(f"no offline W&B run named {name} in {run_dir}")


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B with no network and no login: offline, quiet, its own folders in tmp_path."""
    for name in ["WANDB_API_KEY", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_GROUP"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ["WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"]:
        monkeypatch.setenv(name, str(tmp_path / name.lower()))


def test_wandb_offline_logs_each_run(tmp_path, wandb_offline):
    steps = [0, 10, 20, 30]
    tracker = open_tracker("wandb", tmp_path, "ppo_rnn", CONFIG, SWEEP, wandb_project="memorax")
    assert tracker.where.startswith("wandb: 2 runs in group ppo_rnn, offline; upload with: wandb")
    # one thread per run: W&B needs each run's steps in order
    _log_concurrently(
        tracker,
        [
            [
                (run, step, {"train/loss": _loss(run, step), "eval/return": _return(run, step)})
                for step in steps
            ]
            for run in (0, 1)
        ],
    )
    tracker.close()
    tracker.close()
    with pytest.raises(RuntimeError, match="after close"):
        tracker.log(0, 40, {"train/loss": 1.0})

    for run, label in enumerate(["config0-seed0", "config1-seed0"]):
        written = _read_wandb_run(tmp_path, f"ppo_rnn-{label}")
        assert written["run"].project == "memorax"
        assert written["run"].run_group == "ppo_rnn"
        config = {
            item.key: json.loads(item.value_json)
            for item in written["run"].config.update
            if item.key != "_wandb"
        }
        assert config == {**CONFIG, **SWEEP[run]}
        assert sorted(written["history"]) == steps
        for step in steps:
            _assert_same(
                written["history"][step],
                {"train/loss": _loss(run, step), "eval/return": _return(run, step)},
            )
        assert written["exit_code"] == 0


def test_wandb_run_that_raises_is_marked_failed(tmp_path, wandb_offline):
    runs = [{"config": 0, "seed": 3}]
    with (
        pytest.raises(KeyError),
        open_tracker("wandb", tmp_path, "dqn_mamba", CONFIG, runs) as tracker,
    ):
        tracker.log(0, 5, {"train/loss": 2.5})
        raise KeyError("training failed")
    written = _read_wandb_run(tmp_path, "dqn_mamba-seed3")
    assert written["history"] == {5: {"train/loss": 2.5}}
    assert written["exit_code"] == 1


@pytest.mark.parametrize("track, package", [("tensorboard", "tensorboardX"), ("wandb", "wandb")])
def test_missing_package_names_the_install(monkeypatch, track, package):
    real_find_spec = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *args: None if name == package else real_find_spec(name, *args),
    )
    version = tracking.PACKAGES[track][1]
    expected = f"--track {track} needs the {package} package: pip install {package}=={version}"
    with pytest.raises(ValueError) as error:
        check_tracker(track)
    assert str(error.value) == expected
    with pytest.raises(ValueError, match="needs the"):
        open_tracker(track, "unused", "ppo_rnn", CONFIG, SWEEP)


def test_unknown_tracker():
    with pytest.raises(
        ValueError, match=r"--track must be one of tensorboard, wandb \(got 'mlflow'\)"
    ):
        check_tracker("mlflow")


def test_no_tracker_imports_nothing(tmp_path):
    """A fresh interpreter: this process has imported both packages already."""
    code = (
        "import sys\n"
        "from memorax.tracking import check_tracker, open_tracker\n"
        "check_tracker(None)\n"
        f"assert open_tracker(None, {str(tmp_path)!r}, 'ppo_rnn', {{}}, []) is None\n"
        "loaded = {'wandb', 'tensorboardX', 'tensorboard'} & sys.modules.keys()\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not list(tmp_path.iterdir())


def test_pins_match_requirements():
    """The version check_tracker tells people to install is the one tested."""
    requirements = (Path(__file__).parents[1] / "requirements.txt").read_text().splitlines()
    for package, version in tracking.PACKAGES.values():
        assert f"{package}=={version}" in requirements
