"""Tests of evcore.golden.config: validation messages, derived constants, JSON, memories, devices."""

import dataclasses
import json
import math

import numpy as np
import pytest

from evcore.golden.config import (
    DEVICES,
    ConfigError,
    CoreConfig,
    Flag,
    Optimizer,
    QFormat,
    RoundingMode,
    lfsr_is_maximal,
)

PRESETS = [CoreConfig.up5k, CoreConfig.ecp5_85f, CoreConfig.wide]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.__name__)
def test_presets_construct_and_round_trip(preset):
    cfg = preset()
    again = CoreConfig.from_json(cfg.to_json())
    assert again == cfg
    assert CoreConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # Enums and tuples survive the trip as their types, not as strings or lists.
    assert isinstance(again.state_rounding, RoundingMode)
    assert isinstance(again.optimizer, Optimizer)
    assert isinstance(again.sizes, tuple) and isinstance(again.w_frac, tuple)


def test_presets_fit_their_devices():
    assert CoreConfig.up5k().fits("up5k")
    assert CoreConfig.ecp5_85f().fits("ecp5-85f")


def test_from_dict_rejects_unknown_field():
    d = CoreConfig().to_dict()
    d["v_width"] = 16
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['v_width'\]"):
        CoreConfig.from_dict(d)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CoreConfig().v_bits = 12


# -- validation: each message names the field and its bound -------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(sizes=(5, 3)), "CoreConfig.sizes must list an input, at least one hidden and an output"),
    (dict(w_frac=(11,)), r"CoreConfig.w_frac needs one entry per weight matrix \(2\), got \(11,\)"),
    (dict(dt_s=-1e-3), "CoreConfig.dt_s must be a positive finite number, got -0.001"),
    (dict(tau_syn_s=20e-3), "CoreConfig.tau_syn_s = 0.02 must differ from tau_mem_s"),
    (dict(v_bits=40), r"CoreConfig.v_bits = 40 must lie in \[8, 32\]"),
    (dict(v_frac=23), r"CoreConfig.v_frac = 23 must lie in \[0, 22\]"),
    (dict(w_frac=(11, 17)), r"CoreConfig.w_frac\[1\] = 17 must lie in \[0, w_bits - 1 = 15\]"),
    (dict(grad_bits=20), "CoreConfig.grad_bits = 20 must be >= lam_bits = 24"),
    (dict(record_capacity=199),
     r"record_capacity = 199 cannot hold one spike per hidden neuron \(needs >= 200\)"),
    (dict(input_capacity=4), r"input_capacity = 4 cannot hold one spike per input neuron \(needs >= 5\)"),
    (dict(lfsr_taps=0x80000001), "CoreConfig.lfsr_taps = 0x80000001 is not a maximal-length feedback mask"),
    (dict(lfsr_seed=0), r"CoreConfig.lfsr_seed = 0 must lie in \[1, 4294967295\]"),
    (dict(state_rounding="up"),
     r"CoreConfig.state_rounding must be one of \['half_up', 'floor', 'stochastic'\]"),
    (dict(state_rounding="stochastic"), "CoreConfig.state_rounding must be half_up or floor"),
    (dict(optimizer="lion", mom_shift=0), "CoreConfig.mom_shift must be >= 1 for the lion optimizer"),
    (dict(lr_mant=(1 << 16, 1)),
     r"CoreConfig.lr_mant\[0\] = 65536 must lie in \[0, 2\*\*lr_bits - 1 = 65535\]"),
    (dict(silent_threshold=(1.0, 1.5)), r"CoreConfig.silent_threshold\[1\] = 1.5 must lie in \[0, 1\]"),
    (dict(build="small"), r"CoreConfig.build must be one of \['throughput', 'area'\], got 'small'"),
    (dict(build="area", ram_read_regs=1),
     "CoreConfig.build = 'area' shares one multiplier lane, which needs ram_read_regs = 0"),
    (dict(cyc_update_word=1), r"CoreConfig.cyc_update_word = 1 must lie in \[2, 256\]"),
    (dict(cyc_neuron=0), r"CoreConfig.cyc_neuron = 0 must lie in \[1, 8\]"),
])
def test_invalid_fields_name_field_and_bound(changes, message):
    with pytest.raises(ConfigError, match=message):
        CoreConfig(**changes)


def test_decay_rounding_to_one_is_rejected():
    # dt = 1 us: exp(-dt / 20 ms) = 0.99995 rounds to 2**8 / 2**8 with 8 coefficient bits.
    with pytest.raises(ConfigError, match=r"CoreConfig.dt_s = 1e-06: decay beta = 256/2\*\*8 rounds to 1"):
        CoreConfig(dt_s=1e-6, coef_frac=8)


def test_decay_rounding_to_zero_is_rejected():
    # dt = 0.1 s: exp(-0.1 / 5 ms) = 2e-9 rounds to 0 with 16 coefficient bits.
    with pytest.raises(ConfigError, match=r"decay alpha = 0/2\*\*16 rounds to 0"):
        CoreConfig(dt_s=0.1, n_steps=1)


def test_theta_must_fit_v():
    # Q2.6 holds at most 127/64 < theta = 2.
    with pytest.raises(ConfigError, match=r"theta = 2.0 is not representable in V Q2.6"):
        CoreConfig(v_bits=8, v_frac=6, theta=2.0)


def test_width_too_small_for_loss_range():
    # 2**2 * tau_mem / tau0 = 160 exceeds lambda Q8.16 (max 128).
    with pytest.raises(ConfigError, match=r"loss_scale_log2 = 2: softmax term .* = 160 exceeds lambda Q8.16"):
        CoreConfig(loss_scale_log2=2)


def test_int64_headroom_is_checked():
    with pytest.raises(ConfigError, match=r"word widths give a \d+-bit intermediate \(> 62"):
        # SGD multiplies a 48-bit gradient by a 16-bit learning-rate mantissa: 66 bits.
        CoreConfig(optimizer="sgd", grad_bits=48, lr_bits=16)


# -- derived constants --------------------------------------------------------------------------

def test_propagator_constants_by_hand():
    cfg = CoreConfig(dt_s=0.25e-3, coef_frac=16)
    beta = math.exp(-0.25 / 20)
    alpha = math.exp(-0.25 / 5)
    assert cfg.beta_raw == math.floor(beta * 65536 + 0.5) == 64722
    assert cfg.alpha_raw == math.floor(alpha * 65536 + 0.5) == 62340
    # gamma = tau_s/(tau_m - tau_s) (beta - alpha) = (beta - alpha) / 3
    assert cfg.gamma_raw == math.floor((beta - alpha) / 3 * 65536 + 0.5) == 794
    assert cfg.kgamma_raw == math.floor((beta - alpha) * 4 / 3 * 65536 + 0.5) == 3176
    assert cfg.theta_v_raw == 1 << cfg.v_frac and cfg.theta_i_raw == 1 << cfg.i_frac


def test_exp_rom_ends_at_first_zero():
    cfg = CoreConfig()
    rom = cfg.exp_rom
    assert rom[0] == 1 << cfg.exp_frac and rom[-1] == 0 and np.all(rom[:-1] > 0)
    d = np.arange(len(rom))
    np.testing.assert_array_equal(rom, np.floor(np.exp(-d * cfg.dt_s / cfg.tau0_s) * 2**cfg.exp_frac + 0.5))


def test_recip_rom_by_formula():
    cfg = CoreConfig(recip_bits=16, recip_seed_bits=7)
    a = np.arange(128)
    np.testing.assert_array_equal(cfg.recip_rom, np.floor(2.0**23 / (128 + a + 0.5) + 0.5))
    assert cfg.recip_rom.max() < 1 << 16 and cfg.recip_rom.min() >= 1 << 15


def test_qformat():
    q = QFormat(16, 11)
    assert (q.min_raw, q.max_raw, q.lsb) == (-32768, 32767, 2.0**-11)
    assert str(q) == "Q5.11"
    np.testing.assert_array_equal(q.to_raw([1.0, -2.5 / 2048, 100.0, -100.0]), [2048, -2, 32767, -32768])


@pytest.mark.parametrize("opt", ["lion", "sgd"])
def test_with_lr_round_trip(opt):
    cfg = CoreConfig(optimizer=opt, mom_shift=4).with_lr((3e-3, 7e-4))
    for layer, lr in enumerate((3e-3, 7e-4)):
        assert cfg.lr_mant[layer] >> (cfg.lr_bits - 1) == 1  # normalised mantissa
        assert abs(cfg.lr_real(layer) / lr - 1) <= 2.0 ** -(cfg.lr_bits - 1)
        assert cfg.lr_mant_for(lr, layer) == cfg.lr_mant[layer]


def test_lfsr_maximality_against_brute_force():
    # The primitivity test agrees with the measured period for every 8-bit feedback mask.
    def period(taps, bits):
        s, n = 1, 0
        while True:
            bit = s & 1
            s = (s >> 1) ^ (taps if bit else 0)
            n += 1
            if s == 1 or n > 1 << bits:
                return n
    maximal = [t for t in range(1, 256) if period(t, 8) == 255]
    assert [t for t in range(1, 256) if lfsr_is_maximal(t, 8)] == maximal
    assert len(maximal) == 16  # number of primitive polynomials of degree 8
    assert lfsr_is_maximal(0x80200003, 32)


# -- memories and devices -----------------------------------------------------------------------

def test_memory_bits_by_hand():
    cfg = CoreConfig.up5k()
    rep = cfg.memory_report()
    mem = rep["memories"]
    assert mem["synapses"]["depth"] == 5 * 200 + 200 * 3
    assert mem["synapses"]["width"] == cfg.w_bits + 2 * cfg.grad_bits  # lion keeps a momentum word
    assert mem["state"]["depth"] == 203
    assert mem["state"]["width"] == max(cfg.v_bits + cfg.i_bits, 2 * cfg.lam_bits)
    step_bits = (cfg.n_steps).bit_length()
    assert mem["spike_record"]["width"] == step_bits + 8 + cfg.i_bits  # 203 neurons need 8 bits
    assert mem["spike_record"]["depth"] == cfg.record_capacity
    assert rep["total_bits"] == sum(m["bits"] for m in mem.values())


def _ebr(depth, width, modes, copies=1):
    """Block RAMs of one memory in its cheapest aspect ratio (one copy per read port)."""
    return copies * min(math.ceil(width / w) * math.ceil(depth / d) for d, w in modes)


def test_rtl_memories_listed():
    """§8: the two memories the RTL adds, with the RTL's depths and widths."""
    cfg = CoreConfig.up5k()
    mem = cfg.memory_report()["memories"]
    assert (mem["spike_list"]["depth"], mem["spike_list"]["width"]) == (200, (200 - 1).bit_length())
    assert mem["first_spike"]["depth"] == 3
    assert mem["first_spike"]["width"] == cfg.step_bits + cfg.i_bits + cfg.v_bits
    assert mem["input_buffer"]["read_ports"] == 2
    # One-neuron layers still get two-word memories (a one-word memory has no address in Verilog).
    tiny = CoreConfig(sizes=(2, 1, 1)).memory_report()["memories"]
    assert (tiny["spike_list"]["depth"], tiny["spike_list"]["width"]) == (2, 1)
    assert tiny["first_spike"]["depth"] == 2


def test_up5k_placement_by_hand():
    """Every block of the up5k preset on the UP5K, recomputed from the depths and widths: the
    64-bit synapse word in the 4 SPRAMs, the 3-word first_spike in flip-flops, the rest in EBR
    (the input buffer twice: two read ports)."""
    cfg = CoreConfig.up5k()
    rep = cfg.memory_report("up5k")
    mem, modes = rep["memories"], DEVICES["up5k"].ebr_modes
    assert mem["synapses"]["placed"] == "spram" and rep["spram_used"] == 4 == math.ceil(64 / 16)
    assert mem["first_spike"]["placed"] == "logic" and mem["first_spike"]["blocks"] == 0
    assert rep["logic_bits"] == mem["first_spike"]["bits"] == 3 * mem["first_spike"]["width"]
    want = sum(
        _ebr(m["depth"], m["width"], modes, m["read_ports"]) for n, m in mem.items()
        if n not in ("synapses", "first_spike")
    )
    assert rep["ebr_used"] == want <= rep["ebr_available"] == 30
    assert mem["input_buffer"]["blocks"] == 2 * _ebr(16, cfg.step_bits + cfg.input_id_bits, modes)
    assert mem["spike_list"]["blocks"] == _ebr(200, 8, modes) == 1
    # The forward RTL's memories: what yosys maps (16 SB_RAM40_4K, docs/synth.md).
    forward = ("state", "fanin_acc", "spike_record", "input_buffer", "vmax", "spike_list")
    assert sum(mem[n]["blocks"] for n in forward) == 3 + 2 + 5 + 2 + 3 + 1
    assert rep["fits"]


def test_ecp5_placement_by_hand():
    """The ecp5-85f preset on the ECP5-85F: no SPRAM, memories of up to 16 words in LUT RAM."""
    cfg = CoreConfig.ecp5_85f()
    rep = cfg.memory_report("ecp5-85f")
    mem, modes = rep["memories"], DEVICES["ecp5-85f"].ebr_modes
    fabric = {n for n, m in mem.items() if m["depth"] <= 16}
    assert fabric == {"input_buffer", "first_spike"}
    assert all(mem[n]["placed"] == "logic" for n in fabric)
    assert rep["spram_used"] == 0
    want = sum(_ebr(m["depth"], m["width"], modes, m["read_ports"])
               for n, m in mem.items() if n not in fabric)
    assert rep["ebr_used"] == want
    assert mem["synapses"]["blocks"] == _ebr(1600, cfg.synapse_word_bits, modes) == 9
    # The forward RTL's memories: what yosys maps (21 DP16KD, docs/synth.md); the record's 46-bit
    # entry (with §8's first-of-step bit) takes 6 blocks of 2048 x 9.
    forward = ("synapses", "state", "fanin_acc", "spike_record", "vmax", "spike_list")
    assert mem["spike_record"]["width"] == cfg.step_bits + cfg.neuron_bits + cfg.i_bits + 1 == 46
    assert sum(mem[n]["blocks"] for n in forward) == 9 + 2 + 1 + 6 + 2 + 1
    assert rep["fits"] and cfg.fits("ecp5-25f")


def test_too_large_record_does_not_fit_up5k():
    cfg = CoreConfig.up5k(record_capacity=200_000)
    rep = cfg.memory_report("up5k")
    assert not rep["fits"] and not cfg.fits("up5k")
    assert rep["spram_used"] <= DEVICES["up5k"].spram_blocks


def test_unknown_device():
    with pytest.raises(ConfigError, match="unknown device 'zynq'; valid: up5k, ecp5-25f, ecp5-85f"):
        CoreConfig().fits("zynq")


def test_flags_are_distinct_bits():
    values = [int(f) for f in Flag]
    assert len(set(values)) == len(values) and all(v & (v - 1) == 0 for v in values)


@pytest.mark.parametrize("capacity", [2, 5, 16, 64])
def test_fanin_acc_bits_holds_every_input_spike_in_one_step(capacity):
    """§3.3: the fan-in word holds the worst sum of one step: every buffered input spike (ties of one
    input included, §3.1) at the largest weight, or every neuron of a hidden layer spiking."""
    cfg = CoreConfig(sizes=(2, 3, 2), input_capacity=capacity, w_frac=(8, 12),
                     lr_mant=(1, 1), lr_shift=(1, 1), silent_threshold=(1.0, 1.0))
    lo, hi = -(1 << (cfg.fanin_acc_bits - 1)), (1 << (cfg.fanin_acc_bits - 1)) - 1
    w_min = -(1 << (cfg.w_bits - 1))
    for l, n_spikes in ((0, capacity), (1, cfg.sizes[1])):
        shift = cfg.i_frac - cfg.w_frac[l]
        one = w_min << shift if shift >= 0 else w_min >> -shift
        assert lo <= n_spikes * one and -n_spikes * one <= hi, (l, n_spikes, cfg.fanin_acc_bits)


def test_update_cycles_count_cyc_update_word_per_synapse():
    """§7: the update's cycles are cyc_update_word per synapse word plus the fill (2 per word in the
    throughput build: 3204 for the up5k preset)."""
    from evcore.golden.core import FixedCore

    assert FixedCore(CoreConfig.up5k()).update_cycles() == 2 * 1600 + 4 == 3204
    cfg = CoreConfig.up5k(build="area", cyc_update_word=43)
    assert cfg.to_dict()["build"] == "area" and CoreConfig.from_json(cfg.to_json()) == cfg
    assert FixedCore(cfg).update_cycles() == 43 * 1600 + 4


def test_sweep_cycles_count_cyc_neuron_per_neuron():
    """§7: a sweep costs cyc_neuron cycles per neuron plus the fill (up5k: 211 per step at 1, 617 at 3)."""
    from evcore.golden.core import _sweep_cycles

    assert _sweep_cycles(CoreConfig.up5k()) == 200 + 4 + 3 + 4 == 211
    assert _sweep_cycles(CoreConfig.up5k(cyc_neuron=3)) == 3 * 203 + 8 == 617
