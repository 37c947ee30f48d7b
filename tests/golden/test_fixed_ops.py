"""Tests of the integer primitives (docs/core.md §1-§2): shift-round, saturate, reciprocal, LFSR."""

from fractions import Fraction

import numpy as np
import pytest

from evcore.golden.config import CoreConfig, lfsr_is_maximal
from evcore.golden.lfsr import Lfsr
from evcore.golden.ops import (
    ROUND_FLOOR,
    ROUND_HALF_UP,
    bit_length,
    recip,
    recip_array,
    rshift,
    saturate,
)


@pytest.mark.parametrize("x, s, half_up, floor", [
    (5, 1, 3, 2),      # 2.5 -> 3 (half up), 2
    (-5, 1, -2, -3),   # -2.5 -> -2 (half up is toward +inf), -3
    (7, 2, 2, 1),      # 1.75
    (-7, 2, -2, -2),   # -1.75
    (6, 2, 2, 1),      # 1.5 -> 2, 1
    (-6, 2, -1, -2),   # -1.5 -> -1, -2
    (9, 0, 9, 9),
    (3, -2, 12, 12),   # negative shift: exact left shift
])
def test_rshift(x, s, half_up, floor):
    assert rshift(np.int64(x), s, ROUND_HALF_UP) == half_up
    assert rshift(np.int64(x), s, ROUND_FLOOR) == floor


@pytest.mark.parametrize("x, value, flag", [
    (127, 127, 0), (128, 127, 1), (-128, -128, 0), (-129, -128, 1), (0, 0, 0), (10**12, 127, 1),
])
def test_saturate_8_bit(x, value, flag):
    assert saturate(np.int64(x), 8) == (value, flag)


def test_saturate_32_bit_edges():
    assert saturate(np.int64(2**31 - 1), 32) == (2**31 - 1, 0)
    assert saturate(np.int64(2**31), 32) == (2**31 - 1, 1)
    assert saturate(np.int64(-(2**31) - 1), 32) == (-(2**31), 1)


def test_bit_length():
    for d in (1, 2, 3, 255, 256, 2**40 + 1):
        assert bit_length(np.int64(d)) == d.bit_length()


# -- §2.3 reciprocal unit -----------------------------------------------------------------------

def reference_recip(d: int, r: int, k: int) -> tuple[int, int]:
    """The reciprocal unit re-derived from docs/core.md §2.3 with Python integers."""
    e = d.bit_length() - 1
    m = d << (r - 1 - e) if e <= r - 1 else d >> (e - r + 1)
    a = (m >> (r - 1 - k)) - (1 << k)
    den = 2 * (2**k + a) + 1  # 2 (2^k + a + 1/2)
    y0 = (2 ** (r + k + 2) + den) // (2 * den)  # round(2^(r+k+1) / den), half up
    s = r - k + 1
    eps_t = ((1 << (2 * r - 1)) - m * y0) >> s
    assert -(1 << (r - 1)) <= eps_t < (1 << (r - 1)), "Newton residual must fit a signed R-bit operand"
    sh = 2 * r - 1 - s
    y1 = y0 + ((y0 * eps_t + (1 << (sh - 1))) >> sh)
    return min(y1, (1 << r) - 1), e


def seed_error_max(r: int, k: int) -> Fraction:
    """max |1 - m y0 / 2**(2r-1)| over all mantissas m, from interval ends (exact)."""
    worst = Fraction(0)
    for a in range(1 << k):
        y0 = round(Fraction(2 ** (r + k)) / (2**k + a + Fraction(1, 2)))
        lo = (2**k + a) << (r - 1 - k)
        hi = ((2**k + a + 1) << (r - 1 - k)) - 1
        for m in (lo, hi):
            worst = max(worst, abs(1 - Fraction(m * y0, 2 ** (2 * r - 1))))
    return worst


@pytest.mark.parametrize("r, k", [(16, 7), (16, 5), (12, 4)])
def test_recip_exhaustive_over_mantissas(r, k):
    """Bit-exact against the re-derivation for every normalised input, and within the bound of
    §2.3: |y 2**-(R+e) d - 1| <= eps0**2 + 2**(1-R) for inputs of at most R bits."""
    cfg = CoreConfig(recip_bits=r, recip_seed_bits=k)
    d = np.arange(1 << (r - 1), 1 << r, dtype=np.int64)
    y, e = recip_array(cfg, d)
    ref = [reference_recip(int(x), r, k) for x in d[:: max(1, len(d) // 4096)]]
    np.testing.assert_array_equal(np.array(ref)[:, 0], y[:: max(1, len(d) // 4096)])
    assert np.all(y < 1 << r) and np.all(e == r - 1)
    rel = np.abs(y.astype(np.float64) * d * 2.0 ** -(r + e) - 1)
    eps0 = float(seed_error_max(r, k))
    bound = eps0**2 + 2.0 ** (1 - r)
    assert rel.max() <= bound, (rel.max(), bound)
    # The bound is not loose by orders of magnitude (the test could fail).
    assert rel.max() > bound / 8


def test_recip_all_inputs_to_2_pow_20():
    """Inputs wider than R bits are truncated to the mantissa: one more 2**(1-R) of error."""
    cfg = CoreConfig()
    r = cfg.recip_bits
    d = np.arange(1, 1 << 20, dtype=np.int64)
    y, e = recip_array(cfg, d)
    rel = np.abs(y * d.astype(np.float64) * 2.0 ** -(r + e) - 1)
    bound = float(seed_error_max(r, cfg.recip_seed_bits)) ** 2 + 2 * 2.0 ** (1 - r)
    assert rel.max() <= bound
    for x in (1, 2, 3, 1000, 65535, 65536, 65537, 999_999):
        assert (int(y[x - 1]), int(e[x - 1])) == reference_recip(x, r, cfg.recip_seed_bits)


def test_recip_small_values_by_hand():
    cfg = CoreConfig()
    # d = 1: m = 2**15, seed entry 0 = round(2**23 / 128.5) = 65281; eps = 2**31 - 2**15 * 65281
    # = 32768 * 255 = 8355840, eps_t = 8355840 >> 10 = 8160; y1 = 65281 + round(65281 * 8160 / 2**21)
    # = 65281 + round(254.0...) = 65535 (2**16 clipped to 65535); 1/1 = 65535 * 2**-16.
    assert recip(np.int64(1), 16, 7, cfg.recip_rom, cfg.recip_eps_shift) == (65535, 0)
    # d = 3: e = 1, m = 3 << 14 = 49152 (1.5), a = 64.
    y, e = recip(np.int64(3), 16, 7, cfg.recip_rom, cfg.recip_eps_shift)
    assert e == 1 and abs(y * 2.0**-17 - 1 / 3) < 2.0**-30 * 3 + 2.0**-17


def test_recip_rejects_zero():
    with pytest.raises(ValueError, match=">= 1"):
        recip_array(CoreConfig(), [0])


# -- §6.4 LFSR ----------------------------------------------------------------------------------

def test_lfsr_first_draws_by_hand():
    # Seed 1, taps 0x80200003: states 1 -> 0x80200003 -> 0xC0300002 -> 0x60180001 -> 0xB02C0003
    # with output bits 1, 1, 0, 1 (draw 0b1101 = 13); then bits 1, 0, 1, 1 (draw 11), state 0xDB36C002.
    lfsr = Lfsr(0x80200003, 1)
    np.testing.assert_array_equal(lfsr.draws(2, 4), [13, 11])
    assert lfsr.state == 0xDB36C002


def test_lfsr_16_bit_period_exhaustive():
    taps = 0xB400
    assert lfsr_is_maximal(taps, 16)
    # Independent model: every state of the period is distinct and the sequence closes at 65535.
    s, seen, bits = 1, set(), []
    for _ in range(65535):
        seen.add(s)
        bits.append(s & 1)
        s = (s >> 1) ^ (taps if s & 1 else 0)
    assert s == 1 and len(seen) == 65535
    lfsr = Lfsr(taps, 1, bits=16)
    np.testing.assert_array_equal(lfsr.draws(65535, 1), bits)
    assert lfsr.state == 1


def test_lfsr_draw_is_msb_first_concatenation():
    a = Lfsr(0x80200003, 0xACE1ACE1)
    b = Lfsr(0x80200003, 0xACE1ACE1)
    bits = b.draws(64, 1)
    words = a.draws(4, 16)
    expect = [int("".join(str(x) for x in bits[16 * i:16 * i + 16]), 2) for i in range(4)]
    np.testing.assert_array_equal(words, expect)


# -- §6.1 Adam's second moment and 1/sqrt ROM --------------------------------------------------


def test_v_encode_decode():
    from evcore.golden.update import v_decode, v_encode

    m = 14
    for x in (0, 1, 2**14 - 1, 2**14, 2**14 + 1, 12345678, 2**46 - 1):
        packed = v_encode(np.int64(x), m)
        e = x.bit_length() - m
        assert v_decode(packed, m) == (x if e <= 0 else (x >> e) << e)  # truncated to 14 significant bits
        assert packed >> m == max(e, 0)


def test_rsqrt_rom_error_bound():
    """1/sqrt(v) ~ RSQ[p & 1, a] 2**-(R + p // 2) with p the leading-one position and a the k bits
    below it: the midpoint entry is within 2**-(k+2) (slope of x**-1/2 over half an interval of
    width 2**-k) plus half an entry LSB, relative, for every v."""
    cfg = CoreConfig()
    k, r = cfg.rsqrt_index_bits, cfg.rsqrt_bits
    v = np.arange(1, 1 << 18, dtype=np.int64)
    p = np.floor(np.log2(v)).astype(np.int64)
    a = ((v << k) >> p) - (1 << k)
    approx = cfg.rsqrt_rom[p & 1, a] * 2.0 ** -(r + p // 2)
    rel = np.abs(approx * np.sqrt(v) - 1)
    assert rel.max() <= 2.0 ** -(k + 2) + 2.0 ** -(r - 1)
    assert rel.max() > 2.0 ** -(k + 3)
