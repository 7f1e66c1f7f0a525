"""benchmarks/zoo.py, the README's zoo table: every --torso has a row with its kind, and the
carry column counts what acting keeps (known sizes for the classic cells)."""

from benchmarks import zoo
from memorax.networks.torsos import TORSO_NAMES


def test_every_torso_has_a_kind_and_a_row():
    assert sorted(zoo.KIND) == sorted(TORSO_NAMES)
    rows = [line for line in zoo.table().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(TORSO_NAMES)
    assert "**none**" not in "\n".join(rows)  # every torso has contract entries


def test_carry_counts_what_acting_keeps():
    width = zoo.WIDTH
    assert zoo.carry_floats("gru") == width
    assert zoo.carry_floats("lstm") == 2 * width  # cell and hidden state
    assert zoo.carry_floats("framestack") == 3 * width  # the 3 inputs before the current one
    assert zoo.carry_floats("mlp") == 0
