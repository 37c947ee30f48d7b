"""Amaranth-simulator helpers for `lib.stream` interfaces, shared by every ``tests/hdl`` test.

They live in the package (not under ``tests/``) so tests import them as
``from evcore.hdl.sim_streams import stream_put, stream_get``, like any other evcore module.

Both helpers take an optional `random.Random` to insert idle cycles (`stream_put`) or drop
``ready`` (`stream_get`); passing the generator, not a seed, keeps one reproducible sequence per
test. `stream_get` also checks that the *producer* obeys the stream rules 2 and 3 of Amaranth's
``docs/stdlib/stream.rst``, so every unit tested through it gets that check for free.
"""

import random

from amaranth.sim import SimulatorContext

__all__ = ["TIMEOUT_CYCLES", "stream_assert", "stream_get", "stream_put"]

#: Default bound on the cycles one transfer may take: a deadlocked design fails instead of hanging.
TIMEOUT_CYCLES = 10_000


async def stream_put(
    ctx: SimulatorContext,
    stream,
    payload,
    *,
    rng: random.Random | None = None,
    idle_prob: float = 0.0,
    timeout_cycles: int = TIMEOUT_CYCLES,
) -> None:
    """Offer `payload` on `stream` and return after the cycle in which it was transferred.

    Before offering, waits a random number of idle cycles (``valid`` low) drawn with `idle_prob`.
    """
    while rng is not None and rng.random() < idle_prob:
        await ctx.tick()
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    for _ in range(timeout_cycles):
        _clk, _rst, ready = await ctx.tick().sample(stream.ready)
        if ready:
            break
    else:
        raise AssertionError(f"stream_put: {payload!r} not taken within {timeout_cycles} cycles")
    ctx.set(stream.valid, 0)


async def stream_get(
    ctx: SimulatorContext,
    stream,
    *,
    rng: random.Random | None = None,
    ready_prob: float = 1.0,
    also=(),
    timeout_cycles: int = TIMEOUT_CYCLES,
):
    """Take one payload from `stream`, holding ``ready`` low at random with ``1 - ready_prob``.

    Returns the payload, or ``(payload, *values)`` of the signals in `also` sampled in the same
    cycle as the transfer (for side-band outputs such as a flag that qualifies the payload).

    Raises AssertionError if the producer's ``valid`` reacts to ``ready`` within a cycle
    (rule 3), if it drops ``valid`` or changes the payload while stalled (rule 2), or if no
    transfer happens within `timeout_cycles`.
    """
    stalled = None  # payload seen with valid & ~ready in the previous cycle
    for _ in range(timeout_cycles):
        ready = rng is None or rng.random() < ready_prob
        # Rule 3: toggle ready and see whether valid follows it combinationally.
        ctx.set(stream.ready, not ready)
        valid_other = ctx.get(stream.valid)
        ctx.set(stream.ready, ready)
        assert ctx.get(stream.valid) == valid_other, "stream rule 3: valid depends on ready"
        _clk, _rst, valid, payload, *values = await ctx.tick().sample(stream.valid, stream.payload, *also)
        if stalled is not None:
            assert valid, "stream rule 2: valid dropped before the payload was transferred"
            assert payload == stalled, (
                f"stream rule 2: payload changed while stalled: {stalled!r} -> {payload!r}"
            )
        if valid and ready:
            ctx.set(stream.ready, 0)
            return (payload, *values) if also else payload
        stalled = payload if valid else None
    raise AssertionError(f"stream_get: no transfer within {timeout_cycles} cycles")


async def stream_assert(ctx: SimulatorContext, stream, expected, **kwargs) -> None:
    """`stream_get` one payload and assert it equals `expected`."""
    payload = await stream_get(ctx, stream, **kwargs)
    assert payload == expected, f"{payload!r} != {expected!r} (expected)"
