# amaranth: UnusedElaboratable=no
"""`evcore.hdl.update_seq` (the area build's update) in the Amaranth simulator against
`evcore.golden.update.update_weights`.

The harness and the run are `test_update`'s: a real single-port synapse memory, several
consecutive updates with fresh random words (the rails mixed in), every word, v̂, the LFSR state,
the flags and the exact cycle count against golden `FixedCore` (`cyc_update_word` x N +
cyc_sweep_latency); the lane lent by the harness returns junk in every cycle the unit does not ask
for a product.
"""

import pytest

from evcore.golden.config import CoreConfig
from evcore.hdl.update_seq import COARSE, SequencedUpdateUnit, _pieces, shift_slot, word_cycles

from .test_update import OPTIMIZERS, ROUNDINGS, run_unit, small_cfg


def area(cfg, pad=0):
    """``cfg`` as an area build with the least cycles per update word (plus ``pad``)."""
    cfg = cfg.replace(build="area")
    return cfg.replace(cyc_update_word=word_cycles(cfg) + pad)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_seq_unit(opt, rounding):
    run_unit(area(small_cfg(**opt, update_rounding=rounding)), rounds=3, lfsr_write=0x0BADCAFE)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_seq_unit_many_words(opt):
    """210 synapses over two matrices: more words, so more of the rails and of the shift lengths."""
    run_unit(area(small_cfg(sizes=(5, 30, 3), **opt)), rounds=2, seed=4)


@pytest.mark.parametrize("cfg", [
    # k >= v_mant_bits (the ROM index masks truncated bits), floor moments.
    pytest.param(small_cfg(optimizer="adam", v_mant_bits=6, rsqrt_index_bits=8, state_rounding="floor"),
                 id="adam-narrow-v"),
    # s = 0 and negative constant shifts (y = x shifted left).
    pytest.param(small_cfg(optimizer="lion", lr_shift=(0, 3), lr_mant=(3, 5), state_rounding="floor",
                           update_rounding="half_up"), id="lion-shift0"),
    pytest.param(small_cfg(optimizer="sgd", mom_shift=1, lr_shift=(0, 20), sr_bits=5), id="sgd-sr5"),
    pytest.param(small_cfg(optimizer="adam", lr_shift=(0, 1), update_rounding="floor"),
                 id="adam-shift-small"),
    # Narrow gradients: V narrower than COARSE + the ROM index.
    pytest.param(small_cfg(optimizer="adam", grad_bits=8, lam_bits=8, lam_frac=4, v_mant_bits=6,
                           rsqrt_index_bits=5, revive_hidden=0.0), id="adam-grad8"),
])
def test_seq_unit_corners(cfg):
    run_unit(area(cfg), rounds=3, seed=6)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_seq_unit_padded(opt):
    """cyc_update_word above the least: the pad cycles sit before the tail; cycles follow golden."""
    run_unit(area(small_cfg(**opt), pad=3), rounds=2, seed=8)


@pytest.mark.parametrize("latency", [1, 9])
def test_seq_unit_sweep_latency(latency):
    run_unit(area(small_cfg(optimizer="adam", cyc_sweep_latency=latency)), rounds=1, seed=2)


def test_seq_unit_noncanonical_v():
    """v̂ words enc never writes, a large exponent over a small mantissa (dec(v̂) < 2^(2 b_G − 1)):
    dec's shift slot holds every such exponent, as the throughput build's barrel shifter does."""
    run_unit(area(small_cfg(sizes=(5, 30, 3), optimizer="adam")), rounds=2, seed=12, noncanonical=True)


def test_seq_unit_tiny():
    run_unit(area(small_cfg(sizes=(1, 1, 1), optimizer="adam")), rounds=2, seed=9)


def test_seq_unit_up5k():
    """The preset's 1600 synapses as an area build: one update."""
    run_unit(area(CoreConfig.up5k()), rounds=1, seed=11)


def test_seq_unit_rejects_short_words_and_the_throughput_build():
    cfg = area(small_cfg(optimizer="adam"))
    least = cfg.cyc_update_word
    with pytest.raises(ValueError, match=rf"^CoreConfig.cyc_update_word = {least - 1}: .* >= {least} cycles"):
        SequencedUpdateUnit(cfg.replace(cyc_update_word=least - 1))
    with pytest.raises(ValueError, match=r"build = 'throughput', needs 'area'"):
        SequencedUpdateUnit(small_cfg(optimizer="adam"))


def test_seq_unit_rejects_a_narrow_lane():
    cfg = area(small_cfg(optimizer="adam"))
    with pytest.raises(ValueError, match=r"^SequencedUpdateUnit: multiplier lane 16 x 24 bits < 17 x 24"):
        SequencedUpdateUnit(cfg, mul_lane=(16, 24))


def test_shift_slot_holds_every_shift():
    """The greedy COARSE-or-1 shift of s places ends within shift_slot(s_max) cycles."""
    for s_max in range(0, 70):
        worst = 0
        for s in range(s_max + 1):
            left, cyc = s, 0
            while left:
                left -= COARSE if left >= COARSE else 1
                cyc += 1
            worst = max(worst, cyc)
        assert shift_slot(s_max) == worst


@pytest.mark.parametrize(("width", "lane_w"), [(24, 17), (41, 24), (17, 17), (18, 17), (5, 24), (58, 24)])
def test_pieces_cover_a_signed_operand(width, lane_w):
    """The pieces reassemble every operand (low ones unsigned, the top one signed), each fits the lane."""
    import random

    cuts = _pieces(width, lane_w)
    assert cuts[0][0] == 0 and sum(b for _, b in cuts) == width
    assert all(b == lane_w - 1 for _, b in cuts[:-1]) and cuts[-1][1] <= lane_w
    rng = random.Random(width * 100 + lane_w)
    for x in [-(1 << (width - 1)), (1 << (width - 1)) - 1, 0, -1] + [
            rng.randrange(-(1 << (width - 1)), 1 << (width - 1)) for _ in range(200)]:
        u = x & ((1 << width) - 1)
        total = 0
        for j, (lo, bits) in enumerate(cuts):
            piece = (u >> lo) & ((1 << bits) - 1)
            if j == len(cuts) - 1 and piece >> (bits - 1):
                piece -= 1 << bits  # the top piece carries the sign
            total += piece << lo
        assert total == x


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_seq_unit_four_layers(opt):
    """Three weight matrices: the matrix counter steps twice (its lr_mant, bump and constant)."""
    run_unit(area(small_cfg(sizes=(2, 4, 3, 2), **opt)), rounds=2, seed=5)


def test_seq_unit_exponent_left_over_by_a_zero_mantissa(monkeypatch):
    """Every other v̂ is a zero mantissa under the largest exponent (dec(v̂) = 0): its shift outlasts
    dec's slot, so the exponent register still holds the rest when the next word loads its own.
    The next word must start from its own exponent (directed: random words rarely line up so)."""
    from . import test_update

    base = test_update.random_synapses

    def alternate(cfg, rng, n, noncanonical=False):
        out = base(cfg, rng, n, noncanonical)
        for a in range(0, n, 2):
            out[a]["v"] = ((1 << cfg.v_exp_bits) - 1) << cfg.v_mant_bits
        return out

    monkeypatch.setattr(test_update, "random_synapses", alternate)
    run_unit(area(small_cfg(sizes=(5, 6, 3), optimizer="adam")), rounds=2, seed=13)
