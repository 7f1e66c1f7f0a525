"""The complete training state of a multi-seed run, saved between segments so that the run can be
resumed exactly (``--checkpoint-every`` and ``--resume`` in the scripts).

A run folder's ``checkpoints/`` holds one state file (``state-<period>.npz``: every leaf of the
carry of every seed, and the outputs so far) and ``latest.json``, which names that file, the
number of evaluation periods it completed and a SHA-256 of its contents. A state file is written
under a temporary name and renamed; ``latest.json`` is replaced only after that, and the older
state file removed only after this: a run stopped at any instant leaves the last complete
checkpoint readable and never a half-written one that could be mistaken for it.

Nothing here knows what a carry holds: it is a pytree of arrays whose leading axis is the seed
axis, checked leaf by leaf (shape and dtype) against the structure the script expects.
"""

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from memorax.results import atomic_write, write_json

MANIFEST = "latest.json"


def _is_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _host_arrays(tree: Any) -> list[np.ndarray]:
    """Every leaf as a numpy array; typed PRNG keys as their raw key data."""
    leaves = jax.tree.leaves(tree)
    return [np.asarray(jax.random.key_data(x) if _is_key(x) else x) for x in leaves]


def _digest(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoints:
    """Where and how often a run saves its training state: ``every`` evaluation periods per
    segment (0: never; training is one compiled call), for the run of ``script`` in ``run_dir``."""

    run_dir: Path | str
    every: int
    script: str

    @property
    def folder(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @property
    def resume_command(self) -> str:
        return f"python algorithms/{self.script}.py --resume {self.run_dir}"

    def has_state(self) -> bool:
        return (self.folder / MANIFEST).is_file()

    def save(self, period: int, carry: Any, outputs: Any, run_seconds: float) -> None:
        """Save the carry after ``period`` evaluation periods and the outputs so far."""
        carry_arrays, output_arrays = _host_arrays(carry), _host_arrays(outputs)
        arrays = carry_arrays + output_arrays
        name = f"state-{period:06d}.npz"
        atomic_write(self.folder / name, lambda file: np.savez(file, *arrays))
        write_json(
            self.folder / MANIFEST,
            {
                "script": self.script,
                "period": period,
                "file": name,
                "carry_leaves": len(carry_arrays),
                "sha256": _digest(arrays),
                "run_seconds": run_seconds,
            },
        )
        for old in self.folder.glob("state-*.npz"):
            if old.name != name:
                old.unlink()

    def check_resumable(self) -> None:
        """A ValueError naming --resume and the fix unless the run can go on: it saves
        checkpoints, has not finished, and its latest checkpoint (if it reached one; if not, the
        run starts again from the beginning, which is the same run) is intact."""
        where = f"--resume {self.run_dir}"
        if (Path(self.run_dir) / "summary.json").is_file():
            raise ValueError(f"{where}: the run has finished; evaluate it with --load")
        if not self.every:
            raise ValueError(
                f"{where}: the run was started without --checkpoint-every, so it saved nothing "
                "to go on from; start it again with --checkpoint-every"
            )
        if self.has_state():
            self._read()

    def _read(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        where = f"--resume {self.run_dir}"
        manifest = json.loads((self.folder / MANIFEST).read_text())
        if manifest.get("script") != self.script:
            raise ValueError(f"{where} is a run of {manifest.get('script')}, not {self.script}")
        try:
            with np.load(self.folder / manifest["file"]) as stored:
                arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{where}: its checkpoint cannot be read ({error})") from None
        if _digest(arrays) != manifest["sha256"]:
            raise ValueError(f"{where}: its checkpoint is damaged (SHA-256 mismatch)")
        return manifest, arrays

    def load(self, carry_template: Any, outputs_template: Any) -> tuple[int, Any, Any, float]:
        """(period, carry, outputs, run_seconds) of the latest checkpoint, checked as
        ``check_resumable`` does. ``carry_template`` (e.g. from ``jax.eval_shape``) gives the
        carry's structure, shapes and dtypes; ``outputs_template`` the outputs' structure (their
        period axis grows)."""
        manifest, arrays = self._read()
        count = manifest["carry_leaves"]
        carry_leaves, treedef = jax.tree.flatten(carry_template)
        if count != len(carry_leaves):
            raise ValueError(
                f"--resume {self.run_dir}: the checkpoint holds {count} arrays where this "
                f"script's state has {len(carry_leaves)}: it was saved by another version"
            )
        restored = []
        for array, leaf in zip(arrays[:count], carry_leaves, strict=True):
            value = jax.random.wrap_key_data(array) if _is_key(leaf) else array
            if value.shape != leaf.shape or value.dtype != leaf.dtype:
                raise ValueError(
                    f"--resume {self.run_dir}: a saved array is {value.dtype}{list(value.shape)} "
                    f"where the run needs {leaf.dtype}{list(leaf.shape)}: the script has changed"
                )
            restored.append(value)
        carry = jax.tree.unflatten(treedef, restored)
        outputs = jax.tree.unflatten(jax.tree.structure(outputs_template), arrays[count:])
        return manifest["period"], carry, outputs, manifest["run_seconds"]

    def remove(self) -> None:
        """Drop the training state once the run's results are written (the parameters stay in
        checkpoint.msgpack; the state, replay buffers included, can be large)."""
        (self.folder / MANIFEST).unlink(missing_ok=True)  # first: a leftover state is then inert
        for path in self.folder.glob("*"):
            path.unlink()
        if self.folder.is_dir():
            self.folder.rmdir()
