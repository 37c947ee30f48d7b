"""Word layouts of the core's memories and host-port regions (docs/core.md §8), from a `CoreConfig`.

In a module of their own so that every unit (`hdl.core`, `hdl.update`, the host side in
`tb.core.host`) reads the same layouts without importing the core.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from evcore.golden.config import CoreConfig

__all__ = ["synapse_layout", "state_layout", "lam_layout", "loss_layout", "record_layout", "vmax_layout",
           "first_layout"]


def synapse_layout(cfg: CoreConfig) -> data.StructLayout:
    """§8 `synapses`: weight, gradient accumulator, first moment (the backward unit's fields)."""
    fields = {"w": signed(cfg.w_bits), "g": signed(cfg.grad_bits)}
    if cfg.has_momentum:
        fields["m"] = signed(cfg.grad_bits)
    return data.StructLayout(fields)



def state_layout(cfg: CoreConfig) -> data.StructLayout:
    """§8 `state` in the forward pass: (V, I)."""
    return data.StructLayout({"v": signed(cfg.v_bits), "cur": signed(cfg.i_bits)})



def lam_layout(cfg: CoreConfig) -> data.StructLayout:
    """§8 `state` in the backward pass: (Λ_V, Λ_I)."""
    return data.StructLayout({"lam_v": signed(cfg.lam_bits), "lam_i": signed(cfg.lam_bits)})



def loss_layout(cfg: CoreConfig) -> data.StructLayout:
    """`Region.LOSS` word of output k: p̂_k and L̂_k (§4.2-§4.3)."""
    return data.StructLayout({"prob": unsigned(cfg.prob_frac), "lterm": signed(cfg.lam_bits)})



def record_layout(cfg: CoreConfig) -> data.StructLayout:
    """§8 `spike_record`: (step, global neuron address, I⁻), and with ``ram_read_regs`` the bit
    `first`: the entry is the first of its step (§8: the backward scan decides from a register)."""
    fields = {"step": unsigned(cfg.step_bits), "nrn": unsigned(cfg.neuron_bits), "cur": signed(cfg.i_bits)}
    if cfg.ram_read_regs:
        fields["first"] = 1
    return data.StructLayout(fields)



def vmax_layout(cfg: CoreConfig) -> data.StructLayout:
    """§8 `vmax`: running maximum of V' and its first step (§3.6); spiked in this sample, fired in a
    training sample of this minibatch, dead (silent in the previous one) (§5.6)."""
    return data.StructLayout(
        {"vmax": signed(cfg.v_bits), "vstep": unsigned(cfg.step_bits), "spiked": 1, "fired": 1, "dead": 1}
    )



def first_layout(cfg: CoreConfig) -> data.StructLayout:
    """An output's first-spike register (§3.4): (step, I⁻, V' before reset)."""
    return data.StructLayout(
        {"step": unsigned(cfg.step_bits), "cur": signed(cfg.i_bits), "v": signed(cfg.v_bits)}
    )
