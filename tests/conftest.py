"""Test-session set-up: one persistent compilation cache per test process, and the longest tests
first.

Cache: each xdist worker has its own, so a program another test already compiled is read back
instead of compiled again: the contract's reset patterns, the tiny configs many tests share.
Measured on 2 cores: the contract tests of 4 torsos 149 s without it, 104 s with a fresh cache.
Executables read back are the ones compiled, so no result changes; subprocesses are not affected
(tests/script_runs.py gives the resume check its own cache).

Order: the tests that take longest start first, so that the two workers end together instead of
one running a 7-minute test while the other has nothing left (README's test command hands out
one test at a time, --maxschedchunk 1). Seconds as measured in CI on 2 cores (2026-12-03); a
name missing here only loses its place in the queue.
"""

import shutil
import tempfile

import jax

_CACHE: list[str] = []

LONGEST = {
    "tests/test_sac.py::test_s5_learns_position_only_pendulum_and_beats_its_memoryless_twin": 459,
    "tests/test_sac.py::test_main_writes_results_resumes_exactly_and_load_evaluates_them": 175,
    "tests/test_dqn.py::test_main_writes_results_resumes_exactly_and_load_evaluates_them": 111,
    "tests/test_ppo.py::test_main_writes_results_resumes_exactly_and_load_evaluates_them": 107,
    "tests/test_sweep.py::test_config_i_seed_j_of_a_sweep_equals_the_plain_run[ppo_rnn]": 88,
    "tests/test_ppo.py::test_gru_learns_position_only_cartpole_and_beats_its_memoryless_twin": 74,
    "tests/test_sweep.py::test_config_i_seed_j_of_a_sweep_equals_the_plain_run[sac_s5]": 73,
    "tests/test_dqn.py::test_mamba_learns_position_only_cartpole_and_beats_its_memoryless_twin": 73,
    "tests/test_sac.py::test_docs_api_with_user_built_parts": 52,
    "tests/test_sac.py::test_targets_and_losses_equal_step_by_step_reference_from_every_stored_carry": 49,  # noqa: E501
    "tests/test_user_env.py::test_each_script_trains_a_users_env_and_loads_it_back_only_on_that_env[sac_s5]": 48,  # noqa: E501
    "tests/test_popgym_table.py::test_a_tiny_table_holds_the_statistics_of_its_returns": 47,
    "tests/test_ppo.py::test_two_simulated_devices_give_the_same_results_as_one": 47,
    "tests/test_gpu_benchmark.py::test_a_tiny_run_writes_every_part_with_finite_positive_figures": 45,  # noqa: E501
    "tests/test_sweep.py::test_config_i_seed_j_of_a_sweep_equals_the_plain_run[dqn_mamba]": 41,
    "tests/test_sac.py::test_stored_carries_are_the_carries_that_acted": 37,
    "tests/test_sac.py::test_train_is_resumable_bit_for_bit": 37,
    "tests/test_dqn.py::test_burn_in_gets_no_gradient[mamba]": 36,
    "tests/test_ppo.py::test_train_is_resumable_bit_for_bit": 35,
    "tests/test_ppo.py::test_seed_i_of_a_multi_seed_run_equals_the_single_seed_run": 34,
}  # fmt: skip


def pytest_configure(config) -> None:
    _CACHE.append(tempfile.mkdtemp(prefix="memorax-test-jax-cache-"))
    jax.config.update("jax_compilation_cache_dir", _CACHE[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_collection_modifyitems(config, items) -> None:
    items.sort(key=lambda item: -LONGEST.get(item.nodeid, 0))  # stable: the rest keep their order


def pytest_unconfigure(config) -> None:
    for path in _CACHE:
        shutil.rmtree(path, ignore_errors=True)
