"""CI time on a 2-core CPU.

One persistent compilation cache for the whole run, shared by the xdist workers: a program that
any test already compiled, in either worker, is read back instead of compiled again (the
contract's reset patterns, the tiny configs many tests share). The controller makes it before
the workers start and hands it on in the environment. Executables read back are the ones
compiled, so no result changes. Entries are compressed: one that a worker reads while the other
still writes it fails to read back, and jax warns and compiles the program itself. Measured on
2 cores (2026-12-04), the contract tests with two workers: 268 s with a cache per worker, 252 s
shared. The resume check's stopped runs, subprocesses, share it too (tests/script_runs.py).

LLVM at optimisation level 1 (XLA's default is 3) on a CPU: most tests compile far more than
they run. Measured on 2 cores side by side (2026-12-04): a third of the contract tests 132 s ->
100 s, the PPO and DQN learning tests 118 s -> 89 s, the SAC learning test (run-bound) 256 s
both ways. The generated code rounds in a slightly other order, as another CPU's does; the
tests' tolerances are for that (tests/test_contract.py, tests/test_xlstm.py). It is set
before jax starts its backend, whatever the backend (measured on a CPU only), and passed on to
the scripts the tests run as subprocesses."""

import os
import shutil
import tempfile

import jax

_SHARED = "MEMORAX_TEST_JAX_CACHE"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # unless set
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=1"]
    ).strip()
_MADE: list[str] = []


def pytest_configure(config) -> None:
    if _SHARED not in os.environ:  # the controller, or a run without xdist
        os.environ[_SHARED] = tempfile.mkdtemp(prefix="memorax-test-jax-cache-")
        _MADE.append(os.environ[_SHARED])
    jax.config.update("jax_compilation_cache_dir", os.environ[_SHARED])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config) -> None:
    for path in _MADE:
        shutil.rmtree(path, ignore_errors=True)
