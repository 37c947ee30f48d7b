"""The event core (docs/core.md §3-§5, §7, §8): `Core(cfg)`, built from a `CoreConfig` alone.

Forward (inference) and, for a training sample, the loss unit (§4, `hdl.loss`) and the backward
pass (§5: the reverse replay of the spike record with the jump unit `hdl.adjoint` and the gradient
accumulation into the synapse word, and the transposed propagation sweep in `hdl.lif`).

Blocks, in the order of §3.3: the input buffer (`hdl.input_buffer`, §3.1), the fan-out engine
(one synapse per cycle into the fan-in accumulators, §3.3 (a) and (c)), the layer sweep (one
neuron per cycle through `hdl.lif.LifUnit`, §3.2 / §3.3 (b)), the spike recorder and the output
first-spike registers (§3.4), early stop (§3.5), the sticky flags (§1.4) and the performance
counters; a step/phase sequencer drives them. A word-level host port reads and writes the
memories and registers while the core is idle.

Schedule (the cycle model of §7, exact): per step, each input spike of the step costs N_1
cycles, each layer's sweep N_l + ``cyc_sweep_latency`` cycles (N_l issue cycles, then the
pipeline drain and one decision cycle), each hidden spike N_{l+1} cycles; no other cycle is spent
between ``start`` and the end of the forward pass. Backward, per reverse step n: the scan of the
record for step n's block (one cycle per entry), per entry its MAC over the targets
(``cyc_synapse_rmw`` = 2 cycles per synapse: read, then write the gradient into the single-port
synapse memory) and ``cyc_jump`` cycles for the jump; per input spike 2 cycles per target; per
output first spike ``cyc_jump``; for n > 0 the propagation sweep with the forward's schedule.
"""

import functools
import hashlib
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import Build, CoreConfig, Flag
from evcore.golden.core import counter_limits

from .adjoint import JumpUnit, err_bits, jump_latency
from .input_buffer import InputBuffer, input_entry_layout
from .layouts import (
    first_layout,
    lam_layout,
    loss_layout,
    record_layout,
    state_layout,
    synapse_layout,
    vmax_layout,
)
from .lif import LANE_PRODUCTS, LifUnit, lif_latency, rnd, sat, sat_by_bits
from .loss import LossUnit
from .mul import lane_bits, shares_multipliers
from .recip import Recip
from .update import UpdateUnit
from .update_seq import SequencedUpdateUnit, word_cycles

__all__ = ["Core", "Phase", "Reg", "Region", "synapse_layout", "state_layout", "lam_layout", "record_layout",
           "first_layout", "vmax_layout", "loss_layout", "config_id", "sweep_pipeline_cycles", "min_cyc_jump"]


def sweep_pipeline_cycles(cfg: CoreConfig) -> int:
    """Cycles from a sweep's last cycle to its last write-back, inclusive of the latter (memory
    read, LifUnit's stages: 3, plus its operand register with ``ram_read_regs``, or in the area build
    its two more products, taken in the last neuron's cyc_neuron cycles), in which the next phase is
    also chosen: the smallest `cyc_sweep_latency` this RTL can honour."""
    return max(1, 2 + lif_latency(cfg) - cfg.cyc_neuron)


def jump_start_cycle(cfg: CoreConfig) -> int:
    """The cycle of a JUMP / OUT_JUMP phase (0 = its first) in which the jump unit takes its inputs:
    after the Λ read, and with ``ram_read_regs`` (§8) after the replay's pipelined last MAC term."""
    return 1 + cfg.ram_read_regs


def min_cyc_jump(cfg: CoreConfig) -> int:
    """The least `cyc_jump` this RTL honours: the Λ read (and with ``ram_read_regs`` the replay's last
    MAC term), the jump unit (in the area build with its serial shift), the write-back in the jump's
    last cycle."""
    return jump_start_cycle(cfg) + jump_latency(cfg) + 1


#: With ``ram_read_regs`` a fan-out writes its accumulator 3 cycles after the issue, reading it at
#: the issue (§8): the next read of the same target must come at least this many cycles later.
FANOUT_RMW_DISTANCE = 3


class Phase(enum.Enum, shape=4):
    """Sequencer state, visible on `Core.phase`."""

    #: Waiting for ``start``; the host port is open.
    IDLE = 0
    #: §3.3 (a): this step's input spikes into layer 1's accumulators.
    IN_FAN = 1
    #: §3.3 (b): issuing one neuron per cycle.
    SWEEP = 2
    #: §3.3 (b): the sweep's pipeline drains, then the next phase is chosen.
    DRAIN = 3
    #: §3.3 (c): this step's spikes of a hidden layer into the next layer's accumulators.
    SPK_FAN = 4
    #: §4: the loss unit (training sample).
    LOSS = 5
    #: §5.5: Λ = 0 at n = n_end, one neuron per cycle.
    CLEAR = 6
    #: §5.5 (a): find the first record entry of step n (the record is read backwards).
    SCAN = 7
    #: §5.3-§5.4: one record entry's MAC over its targets and their gradient accumulation.
    REPLAY = 8
    #: §5.3: the jump of the replayed entry.
    JUMP = 9
    #: §5.4 / §5.5 (b): the gradient of one input spike.
    IN_GRAD = 10
    #: §5.5 (c): the jump of an output's first spike with its loss term.
    OUT_JUMP = 11
    #: §6: the weight update over every synapse (and dead <- not fired, §5.6).
    UPDATE = 12


class Region(enum.Enum, shape=4):
    """Host-port address spaces (``bus_region``)."""

    #: Synapse words (weight, gradient, moment), read/write, address = synapse index (§8).
    SYNAPSE = 0
    #: Input buffer: a write appends (step, id) (address ignored, IN_OVF when full); read by address.
    INPUT = 1
    #: Neuron state (V, I), read, address = global neuron index (0 = first hidden neuron).
    STATE = 2
    #: Spike record entries (step, neuron, I⁻), read (§3.4).
    RECORD = 3
    #: Output first-spike registers (step, I⁻, V'), read; silent outputs read (T, 0, 0).
    FIRST = 4
    #: Registers (`Reg`).
    REG = 5
    #: Running maximum of V per hidden neuron (vmax, vstep, spiked, fired, dead), read/write
    #: (§3.6, §5.6); only with ``revive_hidden > 0``.
    VMAX = 6
    #: Loss unit results of output k (probability, injected term), read (§4.2-§4.3).
    LOSS = 7
    #: Adam's second moment v̂ of each synapse (§6.1), read/write; only with optimizer adam.
    ADAM_V = 8


class Reg(enum.Enum, shape=8):
    """Register addresses in `Region.REG`; LAYER_COUNT + l is the spike count of layer l + 1."""

    #: Read: 32-bit identification word, the config hash (`config_id`).
    ID = 0
    #: Read: sticky flags (config.Flag bits). Write: clear the bits written as 1.
    FLAGS = 1
    #: Read: input spikes buffered. Write (any value): empty the input buffer.
    IN_COUNT = 2
    #: Read: last step run (§3.5).
    N_END = 3
    #: Read: record entries written.
    REC_COUNT = 4
    #: Read: cycles of the last sample's forward pass (an inference sample: start to the end of
    #: busy); an update counts in CYC_UPDATE only.
    CYC_TOTAL = 5
    #: Read: cycles spent in sweeps (issue + drain).
    CYC_SWEEP = 6
    #: Read: cycles spent in fan-outs (input and hidden).
    CYC_FANOUT = 7
    #: Read: input spikes fanned in (steps <= n_end).
    N_INPUTS = 8
    #: Read/write: the label of the next training sample.
    LABEL = 9
    #: Read: 1 if the last training sample's label output spiked (§4.1: not masked).
    ACTIVE = 10
    #: Read: output jumps of the last backward pass (§5.5 (c)).
    N_JUMPS = 11
    #: Read: revival injections of the last training sample (§5.6).
    N_REVIVED = 12
    #: Read: cycles of the loss unit.
    CYC_LOSS = 13
    #: Read: cycles of the backward pass (0 if it did not run).
    CYC_BACKWARD = 14
    #: Read/write: the LFSR state of the stochastic rounding (§6.4).
    LFSR = 15
    LAYER_COUNT = 16
    #: Read/write: LR_MANT + m is the learning-rate mantissa of weight matrix m (§6.4).
    LR_MANT = 24
    #: Read: cycles of the last update.
    CYC_UPDATE = 32
    #: Read/write: SILENT + l counts the silent (sample, neuron) pairs of layer l + 1 in the training
    #: samples since the last update (§6.5); 0 where the layer is not shaped.
    SILENT = 33


def config_id(cfg: CoreConfig) -> int:
    """The 32-bit identification word: the first 4 bytes of the SHA-256 of the config JSON."""
    return int.from_bytes(hashlib.sha256(cfg.to_json().encode()).digest()[:4], "big")


def multiplier_lane(cfg: CoreConfig, training: bool = True) -> tuple[int, int] | None:
    """The core's shared multiplier lane (§8, "Shared multipliers"): its signed operand widths, the
    widest of its borrowers' needs (training: the replay MAC, the jump, the reciprocal; the area
    build: the neuron unit and the update too); None where every unit multiplies on its own
    (``ram_read_regs = 1``, or the throughput build's inference core)."""
    needs = []
    if training and shares_multipliers(cfg):
        needs += [(cfg.w_bits, cfg.lam_bits), JumpUnit.mul_need(cfg), Recip.mul_need(cfg)]
    if cfg.build is Build.AREA:
        needs.append(LifUnit.mul_need(cfg))
        if training and SequencedUpdateUnit.mul_need(cfg) is not None:
            needs.append(SequencedUpdateUnit.mul_need(cfg))
    return lane_bits(*needs) if needs else None


def check_buildable(cfg: CoreConfig) -> None:
    """Reject, naming the field, a config CoreConfig accepts but this RTL cannot build."""
    if cfg.build is Build.AREA:
        if cfg.cyc_neuron < LANE_PRODUCTS:
            raise ValueError(f"CoreConfig.cyc_neuron = {cfg.cyc_neuron}: the area build's neuron unit takes "
                             f"its {LANE_PRODUCTS} products on one multiplier lane, "
                             f">= {LANE_PRODUCTS} cycles")
        need = word_cycles(cfg, multiplier_lane(cfg))
        if cfg.cyc_update_word < need:
            raise ValueError(f"CoreConfig.cyc_update_word = {cfg.cyc_update_word}: the area build's update "
                             f"needs >= {need} cycles per synapse word")
    elif cfg.cyc_neuron != 1:
        raise ValueError(f"CoreConfig.cyc_neuron = {cfg.cyc_neuron}: the throughput build sweeps one neuron "
                         "per cycle")
    elif cfg.cyc_update_word != 2:
        raise ValueError(f"CoreConfig.cyc_update_word = {cfg.cyc_update_word}: the throughput build's update "
                         "takes 2 cycles per synapse word (one read, one write)")
    need = sweep_pipeline_cycles(cfg)
    if cfg.cyc_sweep_latency < need:
        raise ValueError(
            f"CoreConfig.cyc_sweep_latency = {cfg.cyc_sweep_latency}: the RTL sweep pipeline needs "
            f">= {need}" + (" with ram_read_regs = 1" if cfg.ram_read_regs else "")
        )
    if cfg.ram_read_regs and min(cfg.sizes[1:]) < FANOUT_RMW_DISTANCE:
        raise ValueError(
            f"CoreConfig.sizes = {cfg.sizes}: with ram_read_regs = 1 the RTL fan-out needs every layer "
            f"after the input to have >= {FANOUT_RMW_DISTANCE} neurons (its accumulator read-modify-write "
            "takes 3 cycles)"
        )
    need = min_cyc_jump(cfg)
    if cfg.cyc_jump < need:
        raise ValueError(f"CoreConfig.cyc_jump = {cfg.cyc_jump}: the RTL jump needs >= {need} cycles")
    rmw = 2 + cfg.ram_read_regs
    if cfg.cyc_synapse_rmw != rmw:
        raise ValueError(
            f"CoreConfig.cyc_synapse_rmw = {cfg.cyc_synapse_rmw}: the RTL reads and writes a synapse "
            f"in {rmw} cycles (one port" + (", the gradient sum registered" if cfg.ram_read_regs else "")
            + ")"
        )


class Core(wiring.Component):
    """Forward core (inference) of docs/core.md §3 with a word-level host port.

    Host port (all synchronous; writes and ``start`` are ignored while `busy`): drive
    ``bus_region``/``bus_addr``/``bus_wdata`` with ``bus_we`` for a write, or ``bus_re`` for a
    read whose data is on ``bus_rdata`` `read_latency` cycles later (1; 2 with ``ram_read_regs``,
    §8; the address may change after the ``bus_re`` cycle). ``start`` (one cycle, idle) runs one
    sample on the buffered input spikes; `busy` is high from the next cycle until the pass ends.
    ``start_train`` runs a training sample with label `Reg.LABEL`: forward, loss unit and, unless
    masked without a revival (§4.1, §5.6), the backward pass, accumulating into the gradient words;
    afterwards `Region.STATE` holds (Λ_V, Λ_I) of step 0 (`lam_layout`) instead of (V, I).
    ``start_update`` runs the update (§6) from the gradient words with the learning rates
    `Reg.LR_MANT` + m, clears the gradients and sets dead <- not fired (§5.6).
    Per-sample state (record, first spikes, counters, n_end) is cleared by ``start``; the flags
    are sticky (host clears them, §1.4); the input buffer is emptied by the host (Reg.IN_COUNT).

    Members
    -------
    bus_region : ``In(Region)``; bus_addr : ``In(addr_bits)``; bus_wdata : ``In(data_bits)``;
    bus_we, bus_re : ``In(1)``; bus_rdata : ``Out(data_bits)``;
    start, start_train, start_update : ``In(1)``; busy : ``Out(1)``; in_full : ``Out(1)`` (input buffer full);
    phase : ``Out(Phase)``.
    """

    def __init__(self, cfg: CoreConfig, device: str | None = None, *, training: bool = True):
        check_buildable(cfg)
        self._cfg = cfg
        #: False: an inference-only build (no loss unit, backward pass or update; ``start_train`` and
        #: ``start_update`` are ignored and the LOSS and ADAM_V regions read 0).
        self.training = training
        # Memory placement for synthesis (§8, CoreConfig.memory_report): yosys's cost model would
        # put the synapse word into 28 EBRs rather than 4 SPRAMs; the attribute says where it goes.
        self._ram_style = {}
        if device is not None:
            for name, mem in cfg.memory_report(device)["memories"].items():
                # Fabric ("logic") memories get no attribute: yosys builds them in FFs or LUT RAM.
                if mem["placed"] in ("spram", "ebr"):
                    self._ram_style[name] = {"spram": "huge", "ebr": "block"}[mem["placed"]]
        #: Memories to build in SPRAM (read by synth.flow: no initial contents, -spram).
        self.spram_memories = tuple(n for n, s in self._ram_style.items() if s == "huge")
        s = cfg.sizes
        self.n_neurons = sum(s[1:])
        #: The largest value of each per-sample counter (§7, "Counter widths"): each is built just
        #: that wide, and a register read returns it zero-extended.
        self.counter_limits = counter_limits(cfg)
        words = [
            cfg.synapse_word_bits,
            state_layout(cfg).size,
            record_layout(cfg).size,
            first_layout(cfg).size,
            vmax_layout(cfg).size,
            loss_layout(cfg).size,
            input_entry_layout(cfg).size,
            32,
            cfg.lfsr_bits,
            cfg.v_exp_bits + cfg.v_mant_bits,
            len(Flag),
        ]
        self.data_bits = max(words)
        #: Cycles from a ``bus_re`` cycle to its data on ``bus_rdata`` (§8: 2 with ram_read_regs).
        self.read_latency = 1 + cfg.ram_read_regs
        #: Width of a `state` word: (V, I) forward, (Λ_V, Λ_I) backward (§8).
        self.state_bits = max(state_layout(cfg).size, lam_layout(cfg).size)
        depths = [cfg.n_synapses, self.n_neurons, cfg.record_capacity, cfg.input_capacity, s[-1],
                  Reg.SILENT.value + cfg.n_layers]
        self.addr_bits = max(1, (max(depths) - 1).bit_length())
        #: The identification word (Reg.ID).
        self.config_word = config_id(cfg)
        super().__init__(
            {
                "bus_region": In(Region),
                "bus_addr": In(self.addr_bits),
                "bus_wdata": In(self.data_bits),
                "bus_we": In(1),
                "bus_re": In(1),
                "bus_rdata": Out(self.data_bits),
                "start": In(1),
                "start_train": In(1),
                "start_update": In(1),
                "busy": Out(1),
                "in_full": Out(1),
                "phase": Out(Phase),
            }
        )

    @property
    def cfg(self) -> CoreConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        s = cfg.sizes
        n_layers = cfg.n_layers
        n_out = s[-1]
        lat = cfg.cyc_sweep_latency
        nrn_off = [sum(s[1:l]) for l in range(1, n_layers + 2)]  # base of layer l at index l-1
        w_off = [sum(a * b for a, b in zip(s[:l], s[1 : l + 1])) for l in range(n_layers)]
        n_hidden_max = max(s[1:-1])
        syn_bits = max(1, (cfg.n_synapses - 1).bit_length())
        nrn_range = range(self.n_neurons + 1)
        out_base = nrn_off[n_layers - 1]

        def const_array(values, width=None):
            width = width or max(1, max(values).bit_length())
            return Array(Const(v, width) for v in values)

        # -- memories (§8) -------------------------------------------------------------------
        def attrs(name):
            return {"ram_style": self._ram_style[name]} if name in self._ram_style else None

        m.submodules.synapses = syn = memory.Memory(
            shape=synapse_layout(cfg), depth=cfg.n_synapses, init=[], attrs=attrs("synapses")
        )
        m.submodules.state = state = memory.Memory(shape=self.state_bits, depth=self.n_neurons, init=[])
        m.submodules.fanin_acc = acc = memory.Memory(
            shape=signed(cfg.fanin_acc_bits), depth=self.n_neurons, init=[]
        )
        m.submodules.spike_record = rec = memory.Memory(
            shape=record_layout(cfg), depth=cfg.record_capacity, init=[]
        )
        # This step's spikes of the layer just swept (indices within the layer), for §3.3 (c):
        # separate from the record, which may be full (REC_OVF) while spikes still act.
        # (Depth at least 2: a one-word memory would get a zero-width address in Verilog.)
        m.submodules.spike_list = spk = memory.Memory(
            shape=range(max(2, n_hidden_max)), depth=max(2, n_hidden_max), init=[]
        )
        m.submodules.first_spike = first = memory.Memory(
            shape=first_layout(cfg), depth=max(2, n_out), init=[]
        )
        m.submodules.inbuf = inb = InputBuffer(cfg)
        training = self.training
        lane = multiplier_lane(cfg, training)
        m.submodules.lif = lif = LifUnit(cfg, mul_lane=lane)
        if training:
            # One reciprocal for both (§8): the loss phase and the jumps never overlap.
            recip_d_bits = max(LossUnit.recip_bits(cfg), JumpUnit.recip_bits(cfg))
            # §8, "Shared multipliers": with ram_read_regs = 0 the replay MAC, the jump and the
            # reciprocal take their products from one lane (none of them needs it in a cycle
            # another does).
            m.submodules.loss = loss = LossUnit(cfg, recip_d_bits=recip_d_bits)
            m.submodules.jump = jmp = JumpUnit(cfg, recip_d_bits=recip_d_bits, mul_lane=lane)
            m.submodules.recip = rcp = Recip(cfg, recip_d_bits, mul_lane=lane)
            # The area build's update is sequenced on the lane (§6.6); the throughput one streams.
            m.submodules.update = upd = (SequencedUpdateUnit(cfg, mul_lane=lane) if cfg.build is Build.AREA
                                         else UpdateUnit(cfg))
            adam = upd.adam_v is not None
        else:
            adam = False

        syn_wp = syn.write_port()
        syn_rp = syn.read_port()  # same address as the write port: one single-port SPRAM (§8)
        state_wp = state.write_port()
        state_rp = state.read_port()
        acc_wp = acc.write_port()
        acc_rp = acc.read_port(transparent_for=(acc_wp,))  # back-to-back fan-outs to one target
        rec_wp = rec.write_port()
        rec_rp = rec.read_port()
        spk_wp = spk.write_port()
        spk_rp = spk.read_port(transparent_for=(spk_wp,))
        first_wp = first.write_port()
        first_rp = first.read_port()
        st_fwd = state_layout(cfg)(state_rp.data[: state_layout(cfg).size])
        st_lam = lam_layout(cfg)(state_rp.data[: lam_layout(cfg).size])

        # -- registers -----------------------------------------------------------------------
        phase = Signal(Phase)
        # §8: with ram_read_regs the phase is kept one-hot as well, a register per phase, set with
        # `phase` itself: a phase test is then a register, not a decode of `phase` behind a route.
        one_hot = {p: Signal(init=int(p == Phase.IDLE), name=f"in_{p.name.lower()}")
                   for p in Phase} if cfg.ram_read_regs else None

        def in_phase(*ps):
            return functools.reduce(operator.or_, (one_hot[p] if one_hot else phase == p for p in ps))

        def set_phase(p):
            return [phase.eq(p), *(r.eq(int(q == p)) for q, r in (one_hot or {}).items())]

        step = Signal(cfg.step_bits)
        lay = Signal(range(n_layers))  # swept layer - 1 (IN_FAN: 0; SPK_FAN: source layer - 1)
        j = Signal(range(max(s[1:]) + 1))  # neuron index within the swept layer
        g = Signal(nrn_range)  # global neuron address being issued
        k = Signal(range(max(s[1:]) + 1))  # fan-out target index
        kb = Signal(syn_bits + 1)  # synapse address of target k with source 0
        tgt = Signal(nrn_range)  # accumulator address of target k
        cnt = Signal(range(max(lat, cfg.cyc_jump)))
        ptr = Signal(range(cfg.input_capacity + 1))
        ptr_nxt = Signal.like(ptr)
        q = Signal(range(n_hidden_max + 1))
        q_nxt = Signal.like(q)
        ns = Signal(range(n_hidden_max + 1))
        n_rec = Signal(range(cfg.record_capacity + 1))
        fired = Signal(n_out)
        n_first = Signal(range(n_out + 1))
        n_end = Signal(cfg.step_bits)
        flags = Signal(len(Flag))
        lim = self.counter_limits
        cyc_total, cyc_sweep, cyc_fan, n_inputs = (Signal(range(lim[k] + 1), name=n) for k, n in
                                                   (("cyc_total", "cyc_total"), ("cyc_sweep", "cyc_sweep"),
                                                    ("cyc_fanout", "cyc_fan"), ("n_inputs", "n_inputs")))
        layer_count = [Signal(range(n + 1), name=f"layer_count{l}") for l, n in enumerate(lim["layer_count"])]
        # Training: the sample's mode and label, the outputs' first steps (the loss unit's input).
        train = Signal()
        bwd_reg = Signal()  # set at the end of a training sample's forward pass
        bwd = Signal()  # busy with the loss unit or the backward pass: the backward datapaths
        label = Signal(range(max(2, n_out)))
        out_step = Signal(data.ArrayLayout(unsigned(cfg.step_bits), n_out))
        active = Signal()
        n_jumps = Signal(range(lim["n_jumps"] + 1))
        n_revived = Signal(range(cfg.n_hidden + 1))
        cyc_loss = Signal(range(lim["cyc_loss"] + 1), name="cyc_loss")
        cyc_bwd = Signal(range(lim["cyc_backward"] + 1), name="cyc_bwd")
        cyc_upd = Signal(range((upd.cycles if training else 1) + 1))  # (never 0 bits wide)
        lr_mant = Signal(data.ArrayLayout(unsigned(cfg.lr_bits), n_layers), init=list(cfg.lr_mant))
        walk = Signal(range(max(2, cfg.n_hidden) + 1))  # UPDATE: the vmax word being read
        # §6.5: silent (sample, neuron) pairs per layer since the last update (shaped layers only).
        shaped = [training and t < 1.0 for t in cfg.silent_threshold]
        # 32 bits (§6.5): the host may run any number of samples between updates, so no limit of a
        # sample bounds these.
        silent_cnt = [Signal(32, name=f"silent{l}") for l in range(n_layers)]

        busy = ~one_hot[Phase.IDLE] if one_hot else phase != Phase.IDLE
        m.d.comb += [self.busy.eq(busy), self.phase.eq(phase), bwd.eq(bwd_reg & busy)]
        m.d.comb += self.in_full.eq(inb.count == cfg.input_capacity)
        m.d.sync += [ptr.eq(ptr_nxt), q.eq(q_nxt)]
        m.d.comb += [ptr_nxt.eq(ptr), q_nxt.eq(q)]
        # Read ports addressed by the *next* pointer: their data is always the entry at the pointer.
        # Backward, the input buffer is read downwards: `cur` is the entry below the pointer.
        m.d.comb += [
            inb.cur_addr.eq(Mux(bwd, ptr_nxt - 1, ptr_nxt)),
            inb.nxt_addr.eq(Mux(bwd, ptr_nxt - 2, ptr_nxt + 1)),
            spk_rp.addr.eq(q_nxt),
        ]

        sizes_a = const_array(s)
        w_off_a = const_array(w_off, syn_bits + 1)
        nrn_off_a = const_array(nrn_off, nrn_range.stop.bit_length())

        # -- fan-out engine: issue (this cycle) and accumulate (next cycle) -------------------
        fan_issue = Signal()
        fan_mat = Signal(range(n_layers))
        fan_src = Signal(syn_bits + 1)
        # The accumulator is read at the issue (address `tgt`) and written `fan_stages` cycles later:
        # 1, or with ram_read_regs (§8) 3: the synapse address registered, then the weight and the
        # accumulator word registered before the add. The transparent read port covers a target
        # written in the cycle it is read again (FANOUT_RMW_DISTANCE).
        rr = cfg.ram_read_regs
        fan_stages = 1 + 2 * rr
        fan_pipe = [(fan_issue, fan_mat, tgt)]
        for i in range(1, fan_stages + 1):
            regs = (Signal(name=f"f{i}_valid"), Signal.like(fan_mat, name=f"f{i}_mat"),
                    Signal.like(tgt, name=f"f{i}_tgt"))
            m.d.sync += [r.eq(p) for r, p in zip(regs, fan_pipe[-1])]
            fan_pipe.append(regs)
        fw_valid, fw_mat, fw_tgt = fan_pipe[-1]
        if rr:
            fan_syn_addr = Signal(syn_bits + 1)
            weight = Signal.like(syn_rp.data.w)
            acc_f2, acc_old = Signal(signed(cfg.fanin_acc_bits)), Signal(signed(cfg.fanin_acc_bits))
            m.d.sync += [fan_syn_addr.eq(kb + fan_src), weight.eq(syn_rp.data.w), acc_f2.eq(acc_rp.data),
                         acc_old.eq(acc_f2)]
        else:
            fan_syn_addr = kb + fan_src
            weight, acc_old = syn_rp.data.w, acc_rp.data
        aligned = Signal(signed(cfg.fanin_acc_bits))
        with m.Switch(fw_mat):
            for mat in range(n_layers):
                with m.Case(mat):
                    # §3.2: a weight is rounded to I's LSB as it is fanned in (exact if f_w <= f_I).
                    m.d.comb += aligned.eq(rnd(weight, cfg.w_frac[mat] - cfg.i_frac, cfg.state_rounding))

        # -- sweep pipeline: issue at s0, memories at s1 (LifUnit in), LifUnit out at s3 --------
        sweep_issue = Signal()
        # Neuron address, index and layer travel beside the data: stage i is i cycles after issue;
        # the last stage ("s3": the write-back) is the LifUnit's output.
        stages = [(g, j, lay)]
        for i in range(1, 2 + lif.latency):
            regs = (Signal(nrn_range, name=f"s{i}_g"), Signal.like(j, name=f"s{i}_j"),
                    Signal.like(lay, name=f"s{i}_l"))
            m.d.sync += [r.eq(p) for r, p in zip(regs, stages[-1])]
            stages.append(regs)
        s1_valid = Signal()
        m.d.sync += s1_valid.eq(sweep_issue)
        s3_g, s3_j, s3_l = stages[-1]
        s1_l = stages[1][2]
        m.d.comb += [
            lif.i.valid.eq(s1_valid),
            lif.i.p.v.eq(st_fwd.v),
            lif.i.p.cur.eq(st_fwd.cur),
            lif.i.p.acc.eq(acc_rp.data),
            lif.i.p.zero.eq(step == 0),  # §3.2: the state before step 0 is zero
            lif.i.p.bwd.eq(bwd),
            lif.i.p.lam_v.eq(st_lam.lam_v),
            lif.i.p.lam_i.eq(st_lam.lam_i),
        ]
        out = lif.o.p
        s3_valid = lif.o.valid
        s3_hidden = s3_l != n_layers - 1
        s3_spike = s3_valid & out.spike

        # §3.4: record (hidden), this step's spike list (hidden), first-spike registers (outputs).
        rec_full = n_rec == cfg.record_capacity
        if rr:
            # §8: the backward scan finds a step's first entry from this bit, not by comparing steps.
            rec_last_step = Signal.like(step)
            with m.If(rec_wp.en):
                m.d.sync += rec_last_step.eq(step)
            m.d.comb += rec_wp.data.first.eq((n_rec == 0) | (rec_last_step != step))
        m.d.comb += [
            rec_wp.addr.eq(n_rec),
            rec_wp.data.step.eq(step),
            rec_wp.data.nrn.eq(s3_g),
            rec_wp.data.cur.eq(out.cur_dec),
            rec_wp.en.eq(s3_spike & s3_hidden & ~rec_full),
            spk_wp.addr.eq(ns),
            spk_wp.data.eq(s3_j),
            spk_wp.en.eq(s3_spike & s3_hidden),
            first_wp.addr.eq(s3_j),
            first_wp.data.step.eq(step),
            first_wp.data.cur.eq(out.cur_dec),
            first_wp.data.v.eq(out.v_pre),
        ]
        new_first = s3_spike & ~s3_hidden & ~fired.bit_select(s3_j, 1)
        m.d.comb += first_wp.en.eq(new_first)

        # §3.6 / §5.6: running maximum of V' per hidden neuron, read one (ram_read_regs: two) cycles
        # before the LifUnit's output and written back with it, with this sample's spiked bit and, in a
        # training sample, the minibatch's fired bit. A hidden neuron that is dead, silent so far
        # and has its maximum at a step >= 1 would receive an injection: `n_revived` counts them.
        vmax_rp = None
        host_vmax_we = Signal()
        revival_hit = Signal()  # backward sweep, s1: inject into this neuron
        if cfg.revive_hidden > 0:
            m.submodules.vmax = vmax_mem = memory.Memory(
                shape=vmax_layout(cfg), depth=max(2, cfg.n_hidden), init=[]
            )
            vmax_wp = vmax_mem.write_port()
            vmax_rp = vmax_mem.read_port()
            # The forward update compares the word with V' at the write-back: with ram_read_regs
            # (§8) it is read one cycle earlier and registered, so that the comparison does not
            # follow the block RAM's clock-to-out; the backward sweep and the update walk read it
            # directly (`prev`).
            prev = vmax_rp.data
            if rr:
                prev_fwd = Signal.like(prev)
                m.d.sync += prev_fwd.eq(prev)
            else:
                prev_fwd = prev
            vmax_rd_g = stages[-2 - rr][0]
            higher = (step == 0) | (out.v_pre > prev_fwd.vmax)
            nv = Signal(vmax_layout(cfg))
            m.d.comb += [
                nv.vmax.eq(Mux(higher, Mux(step == 0, 0, out.v_pre), prev_fwd.vmax)),
                nv.vstep.eq(Mux(higher, step, prev_fwd.vstep)),
                nv.spiked.eq(Mux(step == 0, 0, prev_fwd.spiked) | out.spike),
                nv.fired.eq(prev_fwd.fired | (train & out.spike)),
                nv.dead.eq(prev_fwd.dead),
            ]

            def candidate(w):
                return w.dead & ~w.spiked & (w.vstep != 0)

            vmax_fwd_we = s3_valid & s3_hidden & ~bwd
            with m.If(vmax_fwd_we & train):
                was = (step != 0) & candidate(prev_fwd)
                m.d.sync += n_revived.eq(n_revived + candidate(nv) - was)
            # UPDATE (§5.6): dead <- not fired, fired <- 0; word h is read at walk = h, written next cycle.
            walk_we = Signal()
            walk_word = Signal(vmax_layout(cfg))
            m.d.comb += [walk_word.eq(prev), walk_word.fired.eq(0), walk_word.dead.eq(~prev.fired)]
            m.d.sync += walk_we.eq(in_phase(Phase.UPDATE) & (walk < cfg.n_hidden))
            updating = in_phase(Phase.UPDATE) if training else Const(0)
            m.d.comb += [
                vmax_rp.addr.eq(Mux(busy, Mux(updating, walk, Mux(bwd, g, vmax_rd_g)), self.bus_addr)),
                vmax_wp.addr.eq(Mux(busy, Mux(updating, walk - 1, s3_g), self.bus_addr)),
                vmax_wp.data.eq(Mux(busy, Mux(updating, walk_word, nv),
                                    self.bus_wdata[: vmax_layout(cfg).size])),
                vmax_wp.en.eq(vmax_fwd_we | host_vmax_we | (updating & walk_we)),
                # The backward sweep reads the word at s1, beside the neuron's adjoint (§5.6 (e)).
                revival_hit.eq(bwd & (s1_l != n_layers - 1) & candidate(prev) & (prev.vstep == step)),
            ]
        m.d.comb += lif.i.p.inject.eq(revival_hit)

        # -- backward: record replay, gradient accumulation, jumps (§5.3-§5.5) ----------------
        rec_addr = Signal(range(cfg.record_capacity))
        rec_addr_nxt = Signal.like(rec_addr)
        m.d.sync += rec_addr.eq(rec_addr_nxt)
        m.d.comb += rec_addr_nxt.eq(rec_addr)
        rq = Signal(range(cfg.record_capacity + 1))  # record entries not yet replayed
        more = Signal()  # JUMP: the block has an entry after the one whose jump this is
        lo = Signal(range(cfg.record_capacity))  # first entry of the block being replayed
        hi = Signal(range(cfg.record_capacity))  # last entry of that block
        entry = rec_rp.data

        def entry_terms(e, tag):
            """Layer of a record entry (1 .. L-1) minus 1, the synapse address of its target 0 and
            the state address of that target: synapse (target k, source i) of matrix l is at
            w_off[l] + k N_l + i, i = nrn - nrn_off[l-1]."""
            sl = Signal(range(n_layers), name=f"{tag}src_l")
            for l in range(1, n_layers - 1):
                with m.If(e.nrn >= nrn_off[l]):
                    m.d.comb += sl.eq(l)
            sb, tb = Signal(syn_bits + 1, name=f"{tag}syn_base"), Signal(nrn_range, name=f"{tag}tgt_base")
            with m.Switch(sl):
                for l in range(n_layers - 1):
                    with m.Case(l):
                        m.d.comb += [sb.eq(e.nrn + (w_off[l + 1] - nrn_off[l])), tb.eq(nrn_off[l + 1])]
            return sl, sb, tb

        if rr:
            # §8: no address is decided from the record's read data in its own cycle: the jump and
            # the replay's address registers take the entry shown one cycle earlier. In SCAN that is
            # entry lo (the block's first, replayed next); in REPLAY and a jump's first cycles the
            # entry shown is steady, so it is the entry replayed.
            entry_r = Signal.like(entry)
            m.d.sync += entry_r.eq(entry)
        jent = entry_r if rr else entry  # the entry the jump is for
        src_l, syn_base, tgt_base = entry_terms(jent, "")  # the jump's matrix
        if rr:
            rp_src_l, rp_syn_base, rp_tgt_base = (Signal.like(t, name=f"rp_{t.name}") for t in
                                                  (src_l, syn_base, tgt_base))
            # Held in REPLAY: SCAN's last cycle reads the record speculatively (one entry too far
            # down), and the record is pointed back at `lo` in the replay's first cycle.
            with m.If(~in_phase(Phase.REPLAY)):
                m.d.sync += [rp_src_l.eq(src_l), rp_syn_base.eq(syn_base), rp_tgt_base.eq(tgt_base)]
        else:
            rp_src_l, rp_syn_base, rp_tgt_base = src_l, syn_base, tgt_base
        # Read-modify-write of one synapse: 0 = read, last = write (`cyc_synapse_rmw` cycles; with
        # ram_read_regs a middle cycle registers the gradient sum, §8).
        half = Signal(range(cfg.cyc_synapse_rmw))
        rmw_last = half == cfg.cyc_synapse_rmw - 1
        rmw_next = Mux(rmw_last, 0, half + 1)
        mac_p = Signal(signed(cfg.w_bits + cfg.lam_bits))
        mac_v = Signal()
        # D̂'s saturation travels with its MAC term: LAM_SAT is raised when the term is added, so no
        # other cycle's state word can raise it (§1.4: the replay's D̂ of the targets only).
        mac_dsat = Signal()
        err = Signal(signed(err_bits(cfg)))
        m.d.sync += mac_v.eq(0)
        with m.If(mac_v):
            m.d.sync += err.eq(err + mac_p)
        # The saturations of the replay read the top bits with ram_read_regs (§8: fewer levels).
        saturate = sat_by_bits if rr else sat
        d_k, d_sat = saturate(st_lam.lam_v - st_lam.lam_i, cfg.lam_bits)
        if rr:
            # §8: D̂_k and its saturation registered in the middle cycle as well (the state word is
            # the same there and in the write cycle), so no block-RAM read is in series with them.
            d_k_r, d_sat_r = Signal(signed(cfg.lam_bits)), Signal()
            m.d.sync += [d_k_r.eq(d_k), d_sat_r.eq(d_sat)]
            d_k, d_sat = d_k_r, d_sat_r
        g_sum = syn_rp.data.g + st_lam.lam_i
        if rr:
            # §8: Ĝ + Λ̂_I is registered between the read and the write (the read data is the same
            # in the middle cycle and the write cycle: the address holds, the port reads again).
            g_sum_r = Signal(signed(max(cfg.grad_bits, cfg.lam_bits) + 1))
            m.d.sync += g_sum_r.eq(g_sum)
            g_sum = g_sum_r
        g_new, g_sat = saturate(g_sum, cfg.grad_bits)
        if rr:
            # §8: ŵ and D̂_k registered at the write half, the product one cycle later, the sum
            # the next: the last term is in `err` 2 cycles after the replay (the jump starts then).
            mac_w, mac_d, mac_v0 = Signal.like(syn_rp.data.w), Signal(signed(cfg.lam_bits)), Signal()
            mac_dsat0 = Signal()
            m.d.sync += [mac_v0.eq(0), mac_p.eq(mac_w * mac_d), mac_v.eq(mac_v0), mac_dsat.eq(mac_dsat0)]
        rmw_write = Signal()
        syn_upper = syn_rp.data.as_value()[cfg.w_bits + cfg.grad_bits :]  # the moment field, if any
        bwd_syn_addr = Signal(syn_bits + 1)
        bwd_state_addr = Signal(nrn_range)
        # Output jumps of this step: the spiked outputs whose first spike is at `step`.
        oj_mask = Signal(n_out)
        oj_k = Signal(range(max(2, n_out)))
        for o in reversed(range(n_out)):
            with m.If(oj_mask[o]):
                m.d.comb += oj_k.eq(o)
        jump_write = jmp.o.valid if training else Const(0)
        # The cycle of a jump phase whose Λ_V, error sum and I⁻ enter the jump unit (`jump_start_cycle`).
        jump_in_cnt = jump_start_cycle(cfg)
        jump_addr = Signal(nrn_range)
        own_lam_i = Signal(signed(cfg.lam_bits))
        lterm_k = Signal(signed(cfg.lam_bits))
        if training:
            m.d.comb += lterm_k.eq(loss.lterm[oj_k])
            m.d.comb += [
                jmp.i.p.lam_v.eq(st_lam.lam_v),
                jmp.i.p.err.eq(Mux(in_phase(Phase.OUT_JUMP), lterm_k << cfg.w_frac[n_layers - 1], err)),
                jmp.i.p.cur.eq(Mux(in_phase(Phase.OUT_JUMP), first_rp.data.cur, jent.cur)),
                jmp.i.p.mat.eq(Mux(in_phase(Phase.OUT_JUMP), n_layers - 1, src_l + 1)),
                jmp.i.valid.eq(in_phase(Phase.JUMP, Phase.OUT_JUMP) & (cnt == jump_in_cnt)),
            ]
        with m.If(in_phase(Phase.JUMP, Phase.OUT_JUMP) & (cnt == jump_in_cnt)):
            m.d.sync += own_lam_i.eq(st_lam.lam_i)

        # State write port: sweep write-back, CLEAR, jump write-back.
        lam_wb = lam_layout(cfg).const({"lam_v": 0, "lam_i": 0})
        with m.If(jump_write):
            m.d.comb += [
                state_wp.addr.eq(jump_addr),
                state_wp.data.eq(Cat(jmp.o.p.lam_v, own_lam_i) if training else 0),
                state_wp.en.eq(1),
            ]
        with m.Elif(in_phase(Phase.CLEAR)):
            m.d.comb += [state_wp.addr.eq(g), state_wp.data.eq(lam_wb.as_value()), state_wp.en.eq(1)]
        with m.Else():
            m.d.comb += [
                state_wp.addr.eq(s3_g),
                state_wp.data.eq(Mux(bwd, Cat(out.lam_v, out.lam_i), Cat(out.v, out.cur))),
                state_wp.en.eq(s3_valid),
            ]
        # Fan-in clear at write-back (the accumulator's write port is the fan-out's when fw_valid;
        # the two never overlap: the drain separates a sweep from the next fan-out).
        m.d.comb += [
            acc_wp.addr.eq(Mux(fw_valid, fw_tgt, s3_g)),
            acc_wp.data.eq(Mux(fw_valid, acc_old + aligned, 0)),
            acc_wp.en.eq(fw_valid | s3_valid),
        ]

        # -- loss unit (§4) ----------------------------------------------------------------
        loss_start = Signal()
        if training:
            m.d.comb += [loss.start.eq(loss_start), loss.label.eq(label)]
            for o in range(n_out):
                m.d.comb += loss.first_step[o].eq(Mux(fired[o], out_step[o], cfg.n_steps))
            # The shared reciprocal: the loss unit's Ŝ during the loss phase (it holds Ŝ there and
            # reads (y, e) a fixed number of cycles later), the jump's d̂ otherwise.
            loss_phase = in_phase(Phase.LOSS)
            if rr:  # §8: a copy of the LOSS one-hot register, placed apart (merged: 73.3, not 81.8 MHz)
                loss_phase = loss_sel = Signal()
            m.d.comb += [
                rcp.i.p.eq(Mux(loss_phase, loss.recip_d.p, jmp.recip_d.p)),
                rcp.i.valid.eq(Mux(loss_phase, loss.recip_d.valid, jmp.recip_d.valid)),
                loss.recip_q.p.eq(rcp.o.p), loss.recip_q.valid.eq(rcp.o.valid),
                jmp.recip_q.p.eq(rcp.o.p), jmp.recip_q.valid.eq(rcp.o.valid),
            ]

        lane_p = None
        if lane:
            # The lane (§8): the replay's MAC in REPLAY; in the area build the neuron unit in its
            # sweeps (§3.2); the reciprocal when it asks (its two Newton products, for the loss unit
            # or a jump); in the area build the update in its phase (§6.6); else the jump (its
            # θ̂_w·Λ̂_V and N̂·y). No two of them need it in one cycle.
            lane_a, lane_b = Signal(signed(lane[0])), Signal(signed(lane[1]))
            lane_p = Signal(signed(sum(lane)))
            borrowers = []
            if training and shares_multipliers(cfg):
                borrowers.append((in_phase(Phase.REPLAY), syn_rp.data.w, d_k))
            if "mul" in lif.signature.members:
                borrowers.append((in_phase(Phase.SWEEP, Phase.DRAIN), lif.mul.a, lif.mul.b))
            if training:
                borrowers.append((rcp.mul.req, rcp.mul.a, rcp.mul.b))
                if "mul" in upd.signature.members:  # alone in its phase
                    borrowers.append((in_phase(Phase.UPDATE), upd.mul.a, upd.mul.b))
                borrowers.append((None, jmp.mul.a, jmp.mul.b))
            for n_b, (cond, a_val, b_val) in enumerate(borrowers):
                if cond is None:
                    ctx = m.Else()
                else:
                    ctx = m.If(cond) if n_b == 0 else m.Elif(cond)
                with ctx:
                    m.d.comb += [lane_a.eq(a_val), lane_b.eq(b_val)]
            m.d.comb += lane_p.eq(lane_a * lane_b)
            for unit in (lif, *((rcp, jmp, upd) if training else ())):
                if "mul" in unit.signature.members:
                    m.d.comb += unit.mul.p.eq(lane_p)

        # -- host port --------------------------------------------------------------------
        region, addr = self.bus_region, self.bus_addr
        host_we = self.bus_we & ~busy
        updating = in_phase(Phase.UPDATE) if training else Const(0)
        if training:
            m.d.comb += [
                upd.syn_rdata.eq(syn_rp.data),
                upd.lr_mant.eq(lr_mant),
                upd.start.eq(~busy & self.start_update),
                upd.lfsr_wdata.eq(self.bus_wdata),
                upd.lfsr_we.eq(host_we & (region == Region.REG) & (addr == Reg.LFSR)),
            ]
            upd_syn = (upd.syn_addr, upd.syn_wdata, upd.syn_we)
        else:
            upd_syn = (0, 0, 0)
        m.d.comb += [
            syn_rp.addr.eq(Mux(busy, Mux(updating, upd_syn[0], Mux(bwd, bwd_syn_addr, fan_syn_addr)),
                               addr)),
            syn_wp.addr.eq(syn_rp.addr),
            syn_rp.en.eq(~syn_wp.en),  # SPRAM read-during-write is "no change": say so
            # Backward: the same word with its gradient field replaced (§5.4).
            syn_wp.data.eq(Mux(updating, upd_syn[1],
                               Mux(bwd, Cat(syn_rp.data.w, g_new[: cfg.grad_bits], syn_upper),
                                   self.bus_wdata))),
            syn_wp.en.eq((host_we & (region == Region.SYNAPSE)) | rmw_write | (updating & upd_syn[2])),
            state_rp.addr.eq(Mux(busy, Mux(bwd & ~in_phase(Phase.SWEEP), bwd_state_addr, g), addr)),
            acc_rp.addr.eq(Mux(in_phase(Phase.SWEEP), g, tgt)),
            rec_rp.addr.eq(Mux(busy, rec_addr_nxt, addr)),
            first_rp.addr.eq(Mux(busy, oj_k, addr)),
            inb.push.p.eq(self.bus_wdata),
            inb.push.valid.eq(host_we & (region == Region.INPUT)),
            inb.clear.eq(host_we & (region == Region.REG) & (addr == Reg.IN_COUNT)),
            host_vmax_we.eq(host_we & (region == Region.VMAX)),
        ]
        with m.If(host_we & (region == Region.REG) & (addr == Reg.LABEL)):
            m.d.sync += label.eq(self.bus_wdata)
        for mat in range(n_layers):
            with m.If(host_we & (region == Region.REG) & (addr == Reg.LR_MANT.value + mat)):
                m.d.sync += lr_mant[mat].eq(self.bus_wdata)
        if adam:
            m.d.comb += [
                upd.v_addr.eq(addr),
                upd.v_re.eq(self.bus_re & ~busy & (region == Region.ADAM_V)),
                upd.v_wdata.eq(self.bus_wdata),
                upd.v_we.eq(host_we & (region == Region.ADAM_V)),
            ]
        rd_region = Signal(Region)
        rd_addr = Signal.like(addr)
        m.d.sync += [rd_region.eq(region), rd_addr.eq(addr)]
        regs = {
            Reg.ID: Const(config_id(cfg), 32),
            Reg.FLAGS: flags,
            Reg.IN_COUNT: inb.count,
            Reg.N_END: n_end,
            Reg.REC_COUNT: n_rec,
            Reg.CYC_TOTAL: cyc_total,
            Reg.CYC_SWEEP: cyc_sweep,
            Reg.CYC_FANOUT: cyc_fan,
            Reg.N_INPUTS: n_inputs,
            Reg.LABEL: label,
            Reg.ACTIVE: active,
            Reg.N_JUMPS: n_jumps,
            Reg.N_REVIVED: n_revived,
            Reg.CYC_LOSS: cyc_loss,
            Reg.CYC_BACKWARD: cyc_bwd,
            **({Reg.LFSR: upd.lfsr} if training else {}),
            Reg.CYC_UPDATE: cyc_upd,
        }
        # The read data: block-RAM words by region, the rest (registers, the input buffer's LUT
        # RAM behind its register, the loss words) by region and address.
        silent = first_layout(cfg).const({"step": cfg.n_steps, "cur": 0, "v": 0}).as_value()
        fired_rd = fired.bit_select(rd_addr, 1)
        ram_words = {Region.SYNAPSE: syn_rp.data, Region.STATE: state_rp.data, Region.RECORD: rec_rp.data,
                     Region.FIRST: first_rp.data}
        if vmax_rp is not None:
            ram_words[Region.VMAX] = vmax_rp.data
        if adam:
            ram_words[Region.ADAM_V] = upd.v_rdata
        rdata = Signal.like(self.bus_rdata)
        if rr:
            # §8: each block-RAM word is registered on its own and the region mux comes after those
            # registers (`read_latency` = 2), so that no block-RAM read is in series with a mux.
            held = {r: Signal.like(rdata, name=f"rd_{r.name.lower()}") for r in ram_words}
            rd_rest, rd_region_q, fired_q = Signal.like(rdata), Signal(Region), Signal()
            m.d.sync += [*(held[r].eq(w) for r, w in ram_words.items()),
                         rd_rest.eq(rdata), rd_region_q.eq(rd_region), fired_q.eq(fired_rd)]
            m.d.comb += self.bus_rdata.eq(rd_rest)
            with m.Switch(rd_region_q):
                for r in ram_words:
                    with m.Case(r):
                        value = Mux(fired_q, held[r], silent) if r == Region.FIRST else held[r]
                        m.d.comb += self.bus_rdata.eq(value)
        else:
            m.d.comb += self.bus_rdata.eq(rdata)
        with m.Switch(rd_region):
            if not rr:
                for r, w in ram_words.items():
                    with m.Case(r):
                        m.d.comb += rdata.eq(Mux(fired_rd, w.as_value(), silent) if r == Region.FIRST else w)
            with m.Case(Region.INPUT):
                m.d.comb += rdata.eq(inb.nxt)
            if training:
                with m.Case(Region.LOSS):
                    with m.Switch(rd_addr):
                        for o in range(n_out):
                            with m.Case(o):
                                m.d.comb += rdata.eq(Cat(loss.prob[o], loss.lterm[o]))
            with m.Case(Region.REG):
                with m.Switch(rd_addr):
                    for reg, value in regs.items():
                        with m.Case(reg.value):
                            m.d.comb += rdata.eq(value)
                    for l in range(n_layers):
                        with m.Case(Reg.LAYER_COUNT.value + l):
                            m.d.comb += rdata.eq(layer_count[l])
                        with m.Case(Reg.LR_MANT.value + l):
                            m.d.comb += rdata.eq(lr_mant[l])
                        with m.Case(Reg.SILENT.value + l):
                            m.d.comb += rdata.eq(silent_cnt[l])
        # While idle, `cur` shows entry 0 (ptr is 0) for the start decision and the look-ahead port
        # serves host reads; in the start cycle it must already point at entry 1.
        with m.If(~busy & ~self.start & ~self.start_train & ~self.start_update):
            m.d.comb += inb.nxt_addr.eq(addr)

        # -- flags and counters --------------------------------------------------------------
        raised, raised_fwd = Signal.like(flags), Signal.like(flags)
        m.d.comb += raised_fwd.eq(
            Mux(s3_valid & out.v_sat, int(Flag.V_SAT), 0)
            | Mux(s3_valid & out.i_sat, int(Flag.I_SAT), 0)
            | Mux(s3_spike & s3_hidden & rec_full, int(Flag.REC_OVF), 0)
            | Mux(inb.ovf, int(Flag.IN_OVF), 0)
        )
        if training:
            m.d.comb += raised.eq(
                Mux((s3_valid & out.lam_sat) | (jump_write & jmp.o.p.lam_sat) | (loss.done & loss.lam_sat)
                    | (mac_v & mac_dsat), int(Flag.LAM_SAT), 0)
                | Mux(rmw_write & g_sat, int(Flag.GRAD_SAT), 0)  # the gradient written this cycle
                | Mux(jump_write & jmp.o.p.recip_clamp, int(Flag.RECIP_CLAMP), 0)
                | Mux(upd.mom_sat, int(Flag.MOM_SAT), 0)
                | Mux(upd.w_sat, int(Flag.W_SAT), 0)
                | raised_fwd
            )
        else:
            m.d.comb += raised.eq(raised_fwd)
        clear = Mux(host_we & (region == Region.REG) & (addr == Reg.FLAGS), self.bus_wdata[: len(flags)], 0)
        m.d.sync += flags.eq((flags & ~clear) | raised)
        fwd_phase = busy & ~bwd & ~updating  # CYC_TOTAL: the sample's forward pass (§7)
        with m.If(fwd_phase):
            m.d.sync += cyc_total.eq(cyc_total + 1)
        with m.If(in_phase(Phase.SWEEP, Phase.DRAIN) & ~bwd):
            m.d.sync += cyc_sweep.eq(cyc_sweep + 1)
        with m.If(in_phase(Phase.IN_FAN, Phase.SPK_FAN)):
            m.d.sync += cyc_fan.eq(cyc_fan + 1)
        with m.If(in_phase(Phase.LOSS)):
            m.d.sync += cyc_loss.eq(cyc_loss + 1)
        with m.If(updating):
            m.d.sync += [cyc_upd.eq(cyc_upd + 1), walk.eq(Mux(walk == cfg.n_hidden, walk, walk + 1))]
        with m.If(bwd & ~in_phase(Phase.LOSS)):
            m.d.sync += cyc_bwd.eq(cyc_bwd + 1)
        with m.If(s3_spike):
            with m.Switch(s3_l):
                for l in range(n_layers):
                    with m.Case(l):
                        m.d.sync += layer_count[l].eq(layer_count[l] + 1)
        with m.If(s3_spike & s3_hidden):
            m.d.sync += ns.eq(ns + 1)
            with m.If(~rec_full):
                m.d.sync += n_rec.eq(n_rec + 1)
        with m.If(new_first):
            m.d.sync += [fired.bit_select(s3_j, 1).eq(1), n_first.eq(n_first + 1)]
            with m.Switch(s3_j):
                for o in range(n_out):
                    with m.Case(o):
                        m.d.sync += out_step[o].eq(step)

        # -- loss shaping (§6.5) ----------------------------------------------------------------
        # silent_l gains N_l when a training sample starts and loses 1 whenever a neuron of layer l
        # spikes for the first time in it: the output's fired bit, a hidden neuron's per-sample
        # spiked bit (the vmax word's, else a one-bit memory read and written like the vmax word).
        if any(shaped[:-1]):
            if vmax_rp is not None:
                spiked_before = (step != 0) & prev_fwd.spiked
            else:
                m.submodules.spiked = spiked_mem = memory.Memory(
                    shape=1, depth=max(2, cfg.n_hidden), init=[], attrs=attrs("spiked")
                )
                spiked_wp, spiked_rp = spiked_mem.write_port(), spiked_mem.read_port()
                spiked_prev = spiked_rp.data
                if rr:
                    spiked_prev = Signal()
                    m.d.sync += spiked_prev.eq(spiked_rp.data)
                spiked_before = (step != 0) & spiked_prev
                m.d.comb += [
                    spiked_rp.addr.eq(stages[-2 - rr][0]),
                    spiked_wp.addr.eq(s3_g),
                    spiked_wp.data.eq(spiked_before | out.spike),
                    spiked_wp.en.eq(s3_valid & s3_hidden & ~bwd),
                ]
            hidden_first = s3_spike & s3_hidden & ~bwd & ~spiked_before
        over = []
        for l in range(n_layers):
            if not shaped[l]:
                over.append(Const(0))
                continue
            first_l = new_first if l == n_layers - 1 else hidden_first & (s3_l == l)
            with m.If(~busy & self.start_train):
                m.d.sync += silent_cnt[l].eq(silent_cnt[l] + s[l + 1])
            with m.Elif(upd.done):
                m.d.sync += silent_cnt[l].eq(0)
            with m.Elif(train & first_l):
                m.d.sync += silent_cnt[l].eq(silent_cnt[l] - 1)
            with m.Elif(host_we & (region == Region.REG) & (addr == Reg.SILENT.value + l)):
                m.d.sync += silent_cnt[l].eq(self.bus_wdata)
            over.append(silent_cnt[l] > cfg.silent_count_max[l])  # strict, as golden's bump_layer
        if any(shaped):
            # Only the lowest layer over its limit is bumped. Registered, so that the comparisons stay
            # off the update datapath's first stage: the counters hold still from the last sample (or
            # host write) through the update, whose first synapse reaches that stage 2 cycles after
            # start_update.
            bump_q = Signal.like(upd.bump)
            for l in range(n_layers):
                lowest = over[l] & ~Cat(*over[:l]).any() if l else over[l]
                bump = Const(cfg.silent_bump_raw[l], signed(cfg.w_bits))
                m.d.sync += bump_q[l].eq(Mux(lowest, bump, 0))
            m.d.comb += upd.bump.eq(bump_q)

        # -- sequencer (§3.3, §5.5) ------------------------------------------------------------
        def goto_sweep(layer):
            m.d.sync += [*set_phase(Phase.SWEEP), lay.eq(layer), j.eq(0), ns.eq(0)]

        def goto_in_fan():
            m.d.sync += [*set_phase(Phase.IN_FAN), lay.eq(0), k.eq(0), kb.eq(0), tgt.eq(0)]

        def goto_spk_fan(layer):
            # Source layer = layer + 1, weight matrix = layer + 1, targets in layer + 2.
            m.d.sync += [
                *set_phase(Phase.SPK_FAN), k.eq(0), kb.eq(w_off_a[layer + 1]), tgt.eq(nrn_off_a[layer + 1]),
            ]  # fmt: skip

        # Backward, reverse step n: (a) record block, (b) inputs, (c) outputs, (d)+(e) sweep.
        # Each goto decides from what the read ports show now and moves on to the next item that
        # has work; `n` is the step these decisions are for.
        def goto_outputs(n, hits):
            with m.If(hits != 0):
                m.d.sync += [*set_phase(Phase.OUT_JUMP), oj_mask.eq(hits), cnt.eq(0)]
            with m.Elif(n != 0):
                m.d.sync += [g.eq(0), step.eq(n)]
                goto_sweep(0)
            with m.Else():
                m.d.sync += set_phase(Phase.IDLE)

        def goto_inputs(n, have_input, hits):
            with m.If(have_input):
                m.d.sync += [*set_phase(Phase.IN_GRAD), k.eq(0), kb.eq(0), half.eq(0)]
            with m.Else():
                goto_outputs(n, hits)

        def goto_bstep(n, rec_match, have_input, hits):
            with m.If(rec_match):
                m.d.sync += [*set_phase(Phase.SCAN), lo.eq(rq - 1), hi.eq(rq - 1)]
                m.d.comb += rec_addr_nxt.eq(rq - 2)
            with m.Else():
                goto_inputs(n, have_input, hits)

        def hits_at(n):
            h = Signal(n_out)
            for o in range(n_out):
                m.d.comb += h[o].eq(active & fired[o] & (out_step[o] == n))
            return h

        # Record and input-buffer reads for the decisions: entry rq - 1 and input ptr - 1.
        rec_match_now = (rq != 0) & (entry.step == step)
        rec_match_prev = (rq != 0) & (entry.step == step - 1)
        input_now = (ptr != 0) & (inb.cur.step == step)
        if rr:
            # §8: the record read data decides no read address in the same cycle. The entry shown
            # is steady for many cycles before CLEAR's and DRAIN's decisions, so both compares are
            # registered; SCAN reads one entry ahead unconditionally (`rescan` re-points it).
            rec_match_now_r, rec_match_prev_r, rescan = Signal(), Signal(), Signal()
            m.d.sync += [rec_match_now_r.eq(rec_match_now), rec_match_prev_r.eq(rec_match_prev)]
            rec_match_now, rec_match_prev = rec_match_now_r, rec_match_prev_r

        m.d.comb += [bwd_syn_addr.eq(kb + Mux(in_phase(Phase.IN_GRAD), inb.cur.id, rp_syn_base)),
                     bwd_state_addr.eq(Mux(in_phase(Phase.IN_GRAD), k, rp_tgt_base + k))]
        with m.Switch(phase):
            with m.Case(Phase.IDLE):
                m.d.comb += ptr_nxt.eq(0)
                with m.If(self.start | (self.start_train if training else 0)):
                    m.d.sync += [
                        step.eq(0), g.eq(0), n_rec.eq(0), fired.eq(0), n_first.eq(0), n_end.eq(0),
                        cyc_total.eq(0), cyc_sweep.eq(0), cyc_fan.eq(0), n_inputs.eq(0),
                        *(c.eq(0) for c in layer_count),
                        train.eq(self.start_train if training else 0), bwd_reg.eq(0), active.eq(0),
                        n_jumps.eq(0),
                        n_revived.eq(0), cyc_loss.eq(0), cyc_bwd.eq(0),
                    ]  # fmt: skip
                    with m.If((inb.count != 0) & (inb.cur.step == 0)):
                        goto_in_fan()
                    with m.Else():
                        goto_sweep(0)
                with m.Elif(self.start_update if training else 0):
                    # The update unit's cycle 0 is this one; it is busy from the next.
                    m.d.sync += [*set_phase(Phase.UPDATE), cyc_upd.eq(0), walk.eq(0), bwd_reg.eq(0)]
            with m.Case(Phase.IN_FAN):
                m.d.comb += [fan_issue.eq(1), fan_mat.eq(0), fan_src.eq(inb.cur.id)]
                with m.If(k == s[1] - 1):
                    m.d.sync += [n_inputs.eq(n_inputs + 1), k.eq(0), kb.eq(0), tgt.eq(0)]
                    m.d.comb += ptr_nxt.eq(ptr + 1)
                    with m.If(~((ptr + 1 < inb.count) & (inb.nxt.step == step))):
                        goto_sweep(0)
                with m.Else():
                    m.d.sync += [k.eq(k + 1), kb.eq(kb + s[0]), tgt.eq(tgt + 1)]
            with m.Case(Phase.SWEEP):
                def next_neuron():
                    m.d.sync += [g.eq(g + 1), j.eq(j + 1)]
                    with m.If(j == sizes_a[lay + 1] - 1):
                        m.d.sync += [*set_phase(Phase.DRAIN), cnt.eq(0)]

                if cfg.cyc_neuron == 1:
                    m.d.comb += sweep_issue.eq(1)
                    next_neuron()
                else:
                    # Area build: one neuron per cyc_neuron cycles, issued in the first, its address
                    # held meanwhile (the neuron unit's products take turns on the lane, §3.2).
                    tick = Signal(range(cfg.cyc_neuron))
                    advance = tick == cfg.cyc_neuron - 1
                    m.d.comb += sweep_issue.eq(tick == 0)
                    m.d.sync += tick.eq(Mux(advance, 0, tick + 1))
                    with m.If(advance):
                        next_neuron()
            with m.Case(Phase.DRAIN):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == lat - 1):
                    with m.If(bwd):
                        with m.If(lay != n_layers - 1):
                            goto_sweep(lay + 1)
                        with m.Else():
                            # Reverse step n done: decide for step n - 1.
                            m.d.sync += step.eq(step - 1)
                            prev_step = step - 1
                            goto_bstep(prev_step, rec_match_prev,
                                       (ptr != 0) & (inb.cur.step == prev_step), hits_at(prev_step))
                    with m.Elif(lay != n_layers - 1):
                        # The last neuron's write-back may be this very cycle: count it in.
                        with m.If((ns != 0) | (s3_spike & s3_hidden)):
                            goto_spk_fan(lay)
                        with m.Else():
                            goto_sweep(lay + 1)
                    with m.Else():
                        stop = step == cfg.n_steps - 1
                        if cfg.early_stop:
                            stop |= (n_first + new_first) == n_out
                        with m.If(stop):
                            m.d.sync += n_end.eq(step)
                            with m.If(train if training else 0):
                                # The record is read from its last entry (§5.5).
                                m.d.sync += [*set_phase(Phase.LOSS), bwd_reg.eq(1), rq.eq(n_rec), cnt.eq(0)]
                                if rr and training:
                                    m.d.sync += loss_sel.eq(1)
                                m.d.comb += rec_addr_nxt.eq(n_rec - 1)
                            with m.Else():
                                m.d.sync += set_phase(Phase.IDLE)
                        with m.Else():
                            m.d.sync += [step.eq(step + 1), g.eq(0)]
                            with m.If((ptr < inb.count) & (inb.cur.step == step + 1)):
                                goto_in_fan()
                            with m.Else():
                                goto_sweep(0)
            with m.Case(Phase.SPK_FAN):
                m.d.comb += [fan_issue.eq(1), fan_mat.eq(lay + 1), fan_src.eq(spk_rp.data)]
                with m.If(k == sizes_a[lay + 2] - 1):
                    with m.If(q + 1 < ns):
                        m.d.comb += q_nxt.eq(q + 1)
                        m.d.sync += [k.eq(0), kb.eq(w_off_a[lay + 1]), tgt.eq(nrn_off_a[lay + 1])]
                    with m.Else():
                        m.d.comb += q_nxt.eq(0)
                        goto_sweep(lay + 1)
                with m.Else():
                    m.d.sync += [k.eq(k + 1), kb.eq(kb + sizes_a[lay + 1]), tgt.eq(tgt + 1)]
            if training:  # the loss unit, the backward pass and the update
                with m.Case(Phase.LOSS):
                    m.d.comb += loss_start.eq(cnt == 0)
                    m.d.sync += cnt.eq(1)
                    with m.If(loss.done):
                        m.d.sync += active.eq(loss.active)
                        if rr:
                            m.d.sync += loss_sel.eq(0)
                        # §4.1 / §5.6: no backward pass for a masked sample without an injection.
                        with m.If(loss.active | (n_revived != 0)):
                            m.d.sync += [*set_phase(Phase.CLEAR), g.eq(0)]
                        with m.Else():
                            m.d.sync += set_phase(Phase.IDLE)
                with m.Case(Phase.CLEAR):
                    m.d.sync += g.eq(g + 1)
                    with m.If(g == self.n_neurons - 1):
                        goto_bstep(step, rec_match_now, input_now, hits_at(step))
                with m.Case(Phase.SCAN):
                    if rr:  # §8: the replay's counters are cleared whatever `entry` says
                        m.d.sync += [k.eq(0), kb.eq(0), half.eq(0), err.eq(0)]
                    # `entry` shows record entry lo - 1: extend the block downwards while it is step n's
                    # (§8, ram_read_regs: while entry lo, shown the cycle before, is not its step's first).
                    with m.If(~entry_r.first if rr else (lo != 0) & (entry.step == step)):
                        m.d.sync += lo.eq(lo - 1)
                        m.d.comb += rec_addr_nxt.eq(lo - 2)
                    with m.Else():
                        if rr:  # the same read as above; the replay's first cycle re-points it
                            m.d.sync += [*set_phase(Phase.REPLAY), rescan.eq(1)]
                            m.d.comb += rec_addr_nxt.eq(lo - 2)
                        else:
                            m.d.sync += [*set_phase(Phase.REPLAY), k.eq(0), kb.eq(0), half.eq(0), err.eq(0)]
                            m.d.comb += rec_addr_nxt.eq(lo)
                with m.Case(Phase.REPLAY):
                    if rr:
                        with m.If(rescan):
                            m.d.sync += rescan.eq(0)
                            m.d.comb += rec_addr_nxt.eq(lo)
                    # Target k of the entry: read (half 0), then write its gradient and take its MAC
                    # term (the last cycle).
                    m.d.sync += half.eq(rmw_next)
                    with m.If(rmw_last):
                        m.d.comb += rmw_write.eq(1)
                        if rr:
                            m.d.sync += [mac_w.eq(syn_rp.data.w), mac_d.eq(d_k), mac_v0.eq(1),
                                         mac_dsat0.eq(d_sat)]
                        else:
                            m.d.sync += [mac_p.eq(lane_p if lane else syn_rp.data.w * d_k), mac_v.eq(1),
                                         mac_dsat.eq(d_sat)]
                        with m.If(k == sizes_a[rp_src_l + 2] - 1):
                            m.d.sync += [*set_phase(Phase.JUMP), cnt.eq(0)]
                        with m.Else():
                            m.d.sync += [k.eq(k + 1), kb.eq(kb + sizes_a[rp_src_l + 1])]
                with m.Case(Phase.JUMP):
                    m.d.comb += bwd_state_addr.eq(jent.nrn)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt <= jump_in_cnt):
                        m.d.sync += jump_addr.eq(jent.nrn)
                    # Once the jump has its inputs, the record moves on to the block's next entry
                    # (the replay's address registers then have it before the replay starts).
                    with m.If(cnt == jump_in_cnt):
                        m.d.sync += more.eq(rec_addr != hi)
                        with m.If(rec_addr != hi):
                            m.d.comb += rec_addr_nxt.eq(rec_addr + 1)
                    with m.If(cnt == cfg.cyc_jump - 1):
                        with m.If(~more):
                            # Block done: the entries below it are the earlier steps'.
                            m.d.sync += rq.eq(lo)
                            m.d.comb += rec_addr_nxt.eq(lo - 1)
                            goto_inputs(step, input_now, hits_at(step))
                        with m.Else():
                            m.d.sync += [*set_phase(Phase.REPLAY), k.eq(0), kb.eq(0), half.eq(0), err.eq(0)]
                with m.Case(Phase.IN_GRAD):
                    m.d.sync += half.eq(rmw_next)
                    with m.If(rmw_last):
                        m.d.comb += rmw_write.eq(1)
                        with m.If(k == s[1] - 1):
                            m.d.comb += ptr_nxt.eq(ptr - 1)
                            m.d.sync += [k.eq(0), kb.eq(0)]
                            with m.If(~((ptr != 1) & (inb.nxt.step == step))):
                                goto_outputs(step, hits_at(step))
                        with m.Else():
                            m.d.sync += [k.eq(k + 1), kb.eq(kb + s[0])]
                with m.Case(Phase.UPDATE):
                    with m.If(upd.done):
                        m.d.sync += set_phase(Phase.IDLE)
                with m.Case(Phase.OUT_JUMP):
                    m.d.comb += bwd_state_addr.eq(out_base + oj_k)
                    m.d.sync += [cnt.eq(cnt + 1), jump_addr.eq(out_base + oj_k)]
                    with m.If(cnt == cfg.cyc_jump - 1):
                        m.d.sync += [n_jumps.eq(n_jumps + 1), cnt.eq(0)]
                        rest = oj_mask & ~(1 << oj_k)
                        m.d.sync += oj_mask.eq(rest)
                        with m.If(rest == 0):
                            with m.If(step != 0):
                                m.d.sync += g.eq(0)
                                goto_sweep(0)
                            with m.Else():
                                m.d.sync += set_phase(Phase.IDLE)
        return m
