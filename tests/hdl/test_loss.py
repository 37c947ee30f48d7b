# amaranth: UnusedElaboratable=no
"""`evcore.hdl.loss.LossUnit` in the Amaranth simulator against `evcore.golden.loss.loss_unit`.

Bit for bit on prob, lterm, active and LAM_SAT, and the schedule to the cycle: ``done`` exactly
``2 * n_out + cyc_jump`` cycles after the start cycle (busy high in between and in the done
cycle: §7's loss phase), results stable until the next start. Samples are run back to back in
one simulation: random first-step vectors, all silent, only the label silent, ties, steps 0 and
T - 1, differences beyond the EXP ROM, every label; on up5k, a 10-output config, floor rounding,
a longer cyc_jump and a config whose label term saturates.
The first line silences UnusedElaboratable for the constructor test, which never elaborates.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig, Flag
from evcore.golden.loss import loss_unit
from evcore.golden.ops import pack_params
from evcore.hdl.loss import LossUnit


def golden_loss(cfg: CoreConfig, first_step, label):
    n_out = cfg.sizes[-1]
    prob = np.zeros(n_out, dtype=np.int64)
    lterm = np.zeros(n_out, dtype=np.int64)
    active, flags = loss_unit(
        pack_params(cfg),
        cfg.exp_rom,
        cfg.reg_rom,
        cfg.recip_rom,
        np.asarray(first_step, dtype=np.int64),
        np.int64(label),
        prob,
        lterm,
    )
    return {
        "prob": [int(v) for v in prob],
        "lterm": [int(v) for v in lterm],
        "active": int(active),
        "lam_sat": int(bool(flags & int(Flag.LAM_SAT))),
    }


def rtl_loss(cfg: CoreConfig, samples, gap: int = 2):
    """Run (first_step, label) samples back to back; return per sample the results at done and
    the start-to-done cycle count. Checks busy/done framing and that results hold after done."""
    dut = LossUnit(cfg)
    n_out = cfg.sizes[-1]
    out = []

    async def bench(ctx):
        for steps, label in samples:
            ctx.set(dut.first_step, [int(s) for s in steps])
            ctx.set(dut.label, int(label))
            ctx.set(dut.start, 1)
            assert not ctx.get(dut.busy) and not ctx.get(dut.done)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.label, (int(label) + 1) % n_out)  # sampled only in the start cycle
            cycles = 0
            while True:
                cycles += 1
                assert ctx.get(dut.busy), f"busy low in cycle {cycles}"
                if ctx.get(dut.done):
                    break
                assert cycles < 10 * dut.cycles
                await ctx.tick()
            res = {
                "prob": [int(ctx.get(dut.prob[k])) for k in range(n_out)],
                "lterm": [int(ctx.get(dut.lterm[k])) for k in range(n_out)],
                "active": int(ctx.get(dut.active)),
                "lam_sat": int(ctx.get(dut.lam_sat)),
            }
            out.append((res, cycles))
            for _ in range(gap):  # idle: busy and done low, results held
                await ctx.tick()
                assert not ctx.get(dut.busy) and not ctx.get(dut.done)
                assert int(ctx.get(dut.lterm[n_out - 1])) == res["lterm"][-1]
                assert int(ctx.get(dut.prob[0])) == res["prob"][0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def cases(cfg: CoreConfig, n_random: int, seed: int = 0):
    """(first_step, label) pairs: the named edges, then seeded random ones."""
    n_out, T = cfg.sizes[-1], cfg.n_steps
    far = len(cfg.exp_rom) + 3  # beyond the EXP ROM: saturated to its last (zero) entry
    rng = np.random.default_rng(seed)
    out = []
    for y in range(n_out):
        out.append(([T] * n_out, y))  # all silent: masked
        out.append(([5 if k != y else T for k in range(n_out)], y))  # only the label silent
        out.append(([0] * n_out, y))  # all tie at step 0
        out.append(([T - 1] * n_out, y))  # all tie at the last step
        out.append(([0 if k == y else T - 1 for k in range(n_out)], y))
        out.append(([T - 1 if k == y else 0 for k in range(n_out)], y))  # label last: big REG
        out.append(([10 + far * (k == y) for k in range(n_out)], y))  # label beyond the ROM
        out.append(([10 + far * (k != y) for k in range(n_out)], y))  # others beyond the ROM
        out.append(([(3 * k) % 7 + 20 for k in range(n_out)], y))  # some ties
        out.append(([T if k % 2 else k for k in range(n_out)], y))  # some silent
        out.append(([T - 2 if k == y else T for k in range(n_out)], y))  # silent, yet p > 0
        # Differences 0 .. |EXP| around the end of the ROM, one per output.
        out.append(([40 + (len(cfg.exp_rom) - 2 + k) for k in range(n_out)], y))
    for _ in range(n_random):
        y = int(rng.integers(n_out))
        mode = rng.integers(3)
        if mode == 0:  # anywhere in the trial, sometimes silent
            steps = rng.integers(0, T + 1, n_out)
        elif mode == 1:  # close together: every softmax term matters
            steps = rng.integers(0, 12, n_out) + int(rng.integers(0, T - 12))
        else:  # clustered with silent ones
            steps = np.where(rng.random(n_out) < 0.3, T, rng.integers(0, 30, n_out))
        out.append(([int(min(s, T)) for s in steps], y))
    return out


CONFIGS = {
    "up5k": CoreConfig.up5k(),
    "out10": CoreConfig.up5k(sizes=(4, 20, 10)),
    "floor": CoreConfig.up5k(state_rounding="floor"),
    "jump12_out1": CoreConfig.up5k(sizes=(2, 4, 1), cyc_jump=12),
    "ecp5-85f": CoreConfig.ecp5_85f(),  # the 5-cycle reciprocal of ram_read_regs (§8)
}


def check(cfg, samples):
    got = rtl_loss(cfg, samples)
    want_cycles = 2 * cfg.sizes[-1] + cfg.cyc_jump
    for (steps, label), (res, cycles) in zip(samples, got):
        assert cycles == want_cycles, (steps, label, cycles)
        assert res == golden_loss(cfg, steps, label), (steps, label)


@pytest.mark.parametrize("name", CONFIGS)
def test_loss_unit_matches_golden(name):
    cfg = CONFIGS[name]
    check(cfg, cases(cfg, n_random=500))


#: Configs CoreConfig accepts whose label term Ĉ0 + REG[n_y] exceeds Λ's range: late (first) or
#: every (second, Ĉ0 + REG[0] > 2^23) label spike with a small p̂_y saturates L̂_y (LAM_SAT).
LAM_SAT_CONFIGS = {
    "late": CoreConfig.up5k(loss_scale_log2=1, alpha=6e-3),
    "always": CoreConfig.up5k(loss_scale_log2=1, tau0_s=0.32e-3, tau1_s=50e-3, alpha=10.0),
}


@pytest.mark.parametrize("name", LAM_SAT_CONFIGS)
def test_lam_sat_fires(name):
    cfg = LAM_SAT_CONFIGS[name]
    T, n_out = cfg.n_steps, cfg.sizes[-1]
    assert cfg.loss_c0_raw + int(cfg.reg_rom[-1]) > cfg.lam_fmt.max_raw + 1
    samples = [([T - 1 if k == 0 else 0 for k in range(n_out)], 0), ([0] * n_out, 0), ([T - 1, 0, T], 0),
               ([T, 0, 0], 0)]  # the last: masked, so no flag
    flags = [golden_loss(cfg, s, y)["lam_sat"] for s, y in samples]
    assert flags == [1, 0, 1, 0]
    check(cfg, samples + cases(cfg, n_random=40))


def test_rejects_short_cyc_jump():
    need = LossUnit.min_cyc_jump(CoreConfig.up5k())
    assert need == 8
    LossUnit(CoreConfig.up5k(cyc_jump=need))
    with pytest.raises(ValueError, match=r"^CoreConfig.cyc_jump = 7: "):
        LossUnit(CoreConfig.up5k(cyc_jump=need - 1))
