"""RNN: any flax linen recurrent cell, run over the time axis with a resettable scan."""

import flax.linen as nn
import jax

from memorax.networks.sequence_models.base import Carry, HoistedCell, SequenceModel, reset_carry


class RNN(SequenceModel):
    """Runs ``cell`` (``nn.GRUCell``, ``nn.LSTMCell``, ``nn.OptimizedLSTMCell``, ``nn.MGUCell``,
    ``nn.SimpleCell``, ``FusedGRUCell``, ``FusedLSTMCell``, ``IndRNNCell``, ``ElmanCell``,
    ``MGUCell``, ...) over x: [B, T, F]; the carry is the cell's initial carry wherever ``reset``
    is True. A ``HoistedCell`` (the five above) has its input projection computed for the whole
    sequence before the time loop."""

    cell: nn.RNNCellBase

    @nn.nowrap
    def initialize_carry(self, batch_size: int) -> Carry:
        # flax cells size their carry by the batch dims of the input shape, not its features.
        return self.cell.initialize_carry(jax.random.key(0), (batch_size, 1))

    def __call__(self, x: jax.Array, reset: jax.Array, carry: Carry) -> tuple[Carry, jax.Array]:
        initial_carry = self.initialize_carry(x.shape[0])
        hoisted = isinstance(self.cell, HoistedCell)
        if hoisted:
            x = self.cell.project(x)  # [B, T, kH]: k = 3 GRU, 4 LSTM, 2 MGU, 1 IndRNN, Elman

        def step(cell: nn.RNNCellBase, carry: Carry, inputs: tuple[jax.Array, jax.Array]):
            x_t, reset_t = inputs  # [B, F], [B]
            carry = reset_carry(reset_t, carry, initial_carry)
            return cell.recur(carry, x_t) if hoisted else cell(carry, x_t)

        scan = nn.scan(
            step,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        return scan(self.cell, carry, (x, reset))
