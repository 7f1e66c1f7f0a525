"""The sequence-model contract (docs/design.md) for every torso: one call over T steps equals T
one-step calls for every reset pattern, resets isolate episodes, batch rows are independent, and
jit, vmap and grad work. A new torso joins by being added to a registry below."""

import pytest

from tests import sequence_contract as contract
from tests.test_mamba2 import MAMBA2_TORSOS
from tests.test_memoroid import MEMOROID_TORSOS
from tests.test_self_attention import ATTENTION_TORSOS
from tests.test_sequence_models import RNN_TORSOS

TORSOS = {**RNN_TORSOS, **MEMOROID_TORSOS, **MAMBA2_TORSOS, **ATTENTION_TORSOS}
STATELESS = {"wrapped_mlp"}


@pytest.mark.parametrize("pattern", sorted(contract.RESET_PATTERNS))
@pytest.mark.parametrize("name", sorted(TORSOS))
def test_parallel_equals_stepwise(name, pattern):
    reset = contract.reset_mask(contract.RESET_PATTERNS[pattern], 12)
    contract.check_parallel_equals_stepwise(TORSOS[name], contract.FEATURES, reset)


@pytest.mark.parametrize("name", sorted(set(TORSOS) - STATELESS))
def test_reset_isolation(name):
    contract.check_reset_isolation(TORSOS[name], contract.FEATURES)


@pytest.mark.parametrize("name", sorted(TORSOS))
def test_batch_independence(name):
    contract.check_batch_independence(TORSOS[name], contract.FEATURES)


@pytest.mark.parametrize("name", sorted(TORSOS))
def test_jit_vmap_grad(name):
    contract.check_transforms(TORSOS[name], contract.FEATURES)
