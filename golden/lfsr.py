"""The LFSR of the core (docs/core.md §6.4): random bits for stochastic rounding.

A right-shifting Galois LFSR of ``lfsr_bits`` bits with feedback mask ``lfsr_taps``: each step
outputs the low bit b of the state s, then s <- (s >> 1) ^ (taps if b else 0). A draw of
``sr_bits`` random bits takes that many steps; the first output bit is the draw's MSB.
The default mask 0x80200003 realises x^32 + x^22 + x^2 + x + 1 (maximal, period 2**32 - 1;
CoreConfig checks maximality at construction).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["lfsr_step", "lfsr_draw", "Lfsr"]


@njit(inline="always")
def lfsr_step(state, taps):
    """One step: returns (new state, output bit)."""
    bit = state & 1
    state >>= 1
    if bit:
        state ^= taps
    return state, bit


@njit(inline="always")
def lfsr_draw(state, taps, n_bits):
    """n_bits steps; returns (new state, the output bits packed MSB first)."""
    r = np.int64(0)
    for _ in range(n_bits):
        state, bit = lfsr_step(state, taps)
        r = (r << 1) | bit
    return state, r


@njit(cache=True)
def _draws(state, taps, n_bits, out):
    for k in range(out.shape[0]):
        state, out[k] = lfsr_draw(state, taps, n_bits)
    return state


class Lfsr:
    """Host-side handle on the LFSR (tests, inspection); the kernels use lfsr_draw directly."""

    def __init__(self, taps: int, seed: int, bits: int = 32):
        if not 0 < seed < (1 << bits):
            raise ValueError(f"LFSR seed must lie in [1, 2**{bits} - 1], got {seed}")
        self.taps, self.state, self.bits = int(taps), int(seed), int(bits)

    def step(self) -> int:
        self.state, bit = lfsr_step(np.int64(self.state), np.int64(self.taps))
        self.state = int(self.state)
        return int(bit)

    def draws(self, n: int, n_bits: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        self.state = int(_draws(np.int64(self.state), np.int64(self.taps), n_bits, out))
        return out
