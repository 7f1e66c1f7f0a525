"""One persistent compilation cache per test process (each xdist worker has its own), so that a
program another test already compiled is read back instead of compiled again: the contract's
reset patterns, the tiny configs many tests share. Measured on 2 cores: the contract tests of 4
torsos 149 s without it, 104 s with a fresh cache. Executables read back are the ones compiled,
so no result changes; subprocesses are not affected (tests/script_runs.py gives the resume
check its own cache)."""

import shutil
import tempfile

import jax

_CACHE: list[str] = []


def pytest_configure(config) -> None:
    _CACHE.append(tempfile.mkdtemp(prefix="memorax-test-jax-cache-"))
    jax.config.update("jax_compilation_cache_dir", _CACHE[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config) -> None:
    for path in _CACHE:
        shutil.rmtree(path, ignore_errors=True)
