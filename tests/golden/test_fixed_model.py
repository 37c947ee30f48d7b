"""The Numba golden model against an independent pure-Python reading of docs/core.md, bit for bit.

``RefCore`` below is written from the document, not from the kernels: nested lists of Python
integers (no int64 wrap possible), one function per section, and the backward pass implements
the snapshot rule of §5.5 literally (every read in step n sees a copy of lambda taken at the
start of the step) while the kernel applies jumps in place in record order; their agreement on
networks with two hidden layers checks that the two readings coincide. Narrow words make the
random cases hit every saturation and the reciprocal clamp.
"""

import numpy as np
import pytest

from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore

from .test_fixed_ops import reference_recip


def rnd(x, s, mode):
    """§1.2 on Python ints."""
    if s <= 0:
        return x << -s
    return (x + (1 << (s - 1))) >> s if mode == "half_up" else x >> s


def sat(x, bits, flags, flag):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if x < lo or x > hi:
        flags.add(flag)
        return max(lo, min(hi, x))
    return x


class RefCore:
    def __init__(self, cfg: CoreConfig, weights):
        self.c = cfg
        self.W = [[[int(x) for x in row] for row in w] for w in weights]
        self.mode = cfg.state_rounding.value
        n_hidden = sum(cfg.sizes[1:-1])
        # §5.6: fired in this minibatch's training samples / dead after the previous minibatch.
        self.fired = [False] * n_hidden
        self.dead = [False] * n_hidden

    # §3
    def forward(self, inputs):
        c, mode = self.c, self.mode
        L = c.n_layers
        sizes = c.sizes
        V = [[0] * n for n in sizes[1:]]
        I = [[0] * n for n in sizes[1:]]
        acc = [[0] * n for n in sizes[1:]]
        fx = max(c.v_frac, c.i_frac)
        rec, flags = [], set()
        n_out = sizes[-1]
        first = [None] * n_out
        spiked = [[0] * n for n in sizes[1:]]
        vmax = [[0] * n for n in sizes[1:-1]]  # §3.6: (value, step) from V(0) = 0 at step 0
        vstep = [[0] * n for n in sizes[1:-1]]
        n_end = c.n_steps - 1
        for n in range(c.n_steps):
            for st, i in inputs:
                if st == n:
                    for j in range(sizes[1]):
                        acc[0][j] += rnd(self.W[0][j][i], c.w_frac[0] - c.i_frac, mode)
            for l in range(L):
                fired = []
                for j in range(sizes[l + 1]):
                    x = (c.beta_raw * V[l][j] << (fx - c.v_frac)) + (c.gamma_raw * I[l][j] << (fx - c.i_frac))
                    v = sat(rnd(x, c.coef_frac + fx - c.v_frac, mode), c.v_bits, flags, Flag.V_SAT)
                    i_dec = rnd(c.alpha_raw * I[l][j], c.coef_frac, mode)
                    if l < L - 1 and v > vmax[l][j]:
                        vmax[l][j], vstep[l][j] = v, n
                    if v >= c.theta_v_raw:
                        spiked[l][j] = 1
                        if l < L - 1:
                            if len(rec) < c.record_capacity:
                                rec.append((n, l, j, i_dec))
                            else:
                                flags.add(Flag.REC_OVF)
                            fired.append(j)
                        elif first[j] is None:
                            first[j] = (n, i_dec, v)
                        v = 0
                    I[l][j] = sat(i_dec + acc[l][j], c.i_bits, flags, Flag.I_SAT)
                    V[l][j] = v
                    acc[l][j] = 0
                if l < L - 1:
                    for i in fired:
                        for k in range(sizes[l + 2]):
                            acc[l + 1][k] += rnd(self.W[l + 1][k][i], c.w_frac[l + 1] - c.i_frac, mode)
            if c.early_stop and all(f is not None for f in first):
                n_end = n
                break
        first = [f if f is not None else (c.n_steps, 0, 0) for f in first]
        return dict(rec=rec, first=first, V=V, I=I, flags=flags, n_end=n_end, spiked=spiked,
                    vmax=vmax, vstep=vstep)

    # §2.3 and §5.3
    def jump(self, lam_v, theta_w, err, w_frac, cur, flags):
        c = self.c
        num = sat(rnd(theta_w * lam_v + err, w_frac, self.mode), c.lam_bits, flags, Flag.LAM_SAT)
        d = cur - c.theta_i_raw
        if d < c.recip_min_raw:
            d = c.recip_min_raw
            flags.add(Flag.RECIP_CLAMP)
        y, e = reference_recip(d, c.recip_bits, c.recip_seed_bits)
        return sat(
            lam_v + rnd(num * y, c.recip_bits + e - c.i_frac, self.mode), c.lam_bits, flags, Flag.LAM_SAT
        )

    # §4
    def loss_terms(self, first, label, flags):
        c = self.c
        steps = [f[0] for f in first]
        if steps[label] >= c.n_steps:
            return None
        rom = [int(x) for x in c.exp_rom]
        n_min = min(steps)
        e = [rom[min(s - n_min, len(rom) - 1)] for s in steps]
        y, ex = reference_recip(sum(e), c.recip_bits, c.recip_seed_bits)
        p = [min(rnd(ek * y, c.recip_bits + ex - c.prob_frac, self.mode), (1 << c.prob_frac) - 1) for ek in e]
        out = []
        for k, s in enumerate(steps):
            if s >= c.n_steps:
                out.append(0)
                continue
            t = rnd(c.loss_c0_raw * (p[k] - ((k == label) << c.prob_frac)), c.prob_frac, self.mode)
            if k == label:
                t -= int(c.reg_rom[s])
            out.append(sat(t, c.lam_bits, flags, Flag.LAM_SAT))
        return out

    # §5
    def backward(self, fwd, inputs, label, G):
        """Returns (flags, final (lambda_V, lambda_I) or None if skipped, label spiked)."""
        c, mode = self.c, self.mode
        L, sizes = c.n_layers, c.sizes
        flags = set()
        lterm = self.loss_terms(fwd["first"], label, flags)
        # §5.6: (layer, neuron) -> step of the injection, for dead neurons silent in the sample.
        inject = {}
        g = 0
        for l in range(L - 1):
            for j in range(sizes[l + 1]):
                silent = not fwd["spiked"][l][j]
                if c.revive_hidden > 0 and self.dead[g] and silent and fwd["vstep"][l][j] >= 1:
                    inject[(l, j)] = fwd["vstep"][l][j]
                self.fired[g] |= bool(fwd["spiked"][l][j])
                g += 1
        if lterm is None and not inject:
            return flags, None, False
        lv = [[0] * n for n in sizes[1:]]
        li = [[0] * n for n in sizes[1:]]
        tw = [c.theta_w_raw(m) for m in range(L)]
        for n in range(fwd["n_end"], -1, -1):
            sv = [row[:] for row in lv]  # the snapshot of §5.5
            si = [row[:] for row in li]
            for st, l, i, cur in fwd["rec"]:
                if st != n:
                    continue
                err = 0
                for k in range(sizes[l + 2]):
                    d = sat(sv[l + 1][k] - si[l + 1][k], c.lam_bits, flags, Flag.LAM_SAT)
                    err += self.W[l + 1][k][i] * d
                    G[l + 1][k][i] = sat(G[l + 1][k][i] + si[l + 1][k], c.grad_bits, flags, Flag.GRAD_SAT)
                lv[l][i] = self.jump(sv[l][i], tw[l + 1], err, c.w_frac[l + 1], cur, flags)
            for st, i in inputs:
                if st == n:
                    for k in range(sizes[1]):
                        G[0][k][i] = sat(G[0][k][i] + si[0][k], c.grad_bits, flags, Flag.GRAD_SAT)
            wf = c.w_frac[L - 1]
            for k, (st, cur, _) in enumerate(fwd["first"]):
                if lterm is not None and st == n:
                    lv[L - 1][k] = self.jump(sv[L - 1][k], tw[L - 1], lterm[k] << wf, wf, cur, flags)
            if n > 0:
                for (l, j), st in inject.items():
                    if st == n:
                        lv[l][j] = sat(lv[l][j] - c.revive_raw, c.lam_bits, flags, Flag.LAM_SAT)
                for l in range(L):
                    for j in range(sizes[l + 1]):
                        a, b = lv[l][j], li[l][j]
                        lv[l][j] = rnd(c.beta_raw * a, c.coef_frac, mode)
                        li[l][j] = sat(
                            rnd(c.kgamma_raw * a + c.alpha_raw * b, c.coef_frac, mode),
                            c.lam_bits,
                            flags,
                            Flag.LAM_SAT,
                        )
        return flags, (lv, li), lterm is not None

    def end_of_minibatch(self):
        """§5.6 at the update: dead <- not fired, fired <- 0."""
        self.dead = [not f for f in self.fired]
        self.fired = [False] * len(self.fired)

    # §6
    def update(self, G, M, V, lfsr, bump_layer):
        c = self.c
        flags = set()
        state = lfsr
        vm = c.v_mant_bits
        for m in range(c.n_layers):
            bump = c.silent_bump_raw[m] if m == bump_layer else 0
            for j in range(c.sizes[m + 1]):
                for i in range(c.sizes[m]):
                    g = G[m][j][i]
                    s = c.lr_shift[m]
                    if c.optimizer.value == "adam":
                        M[m][j][i] = sat(
                            M[m][j][i] + rnd(g - M[m][j][i], c.adam_shift1, self.mode),
                            c.grad_bits,
                            flags,
                            Flag.MOM_SAT,
                        )
                        exp, mant = V[m][j][i]
                        v = mant << exp
                        v = v + rnd(g * g - v, c.adam_shift2, self.mode)
                        exp = max(0, v.bit_length() - vm)
                        V[m][j][i] = (exp, v >> exp)
                        v = (v >> exp) << exp
                        if v == 0:
                            u = 0
                        else:
                            p = v.bit_length() - 1
                            k = c.rsqrt_index_bits
                            frac = ((v << k) >> p) - (1 << k)  # the k bits below the leading one
                            u = M[m][j][i] * int(c.rsqrt_rom[p % 2][frac])
                            s += c.rsqrt_bits + p // 2
                    elif c.optimizer.value == "lion":
                        cc = M[m][j][i] + rnd(g - M[m][j][i], c.lion_shift, self.mode)
                        M[m][j][i] = sat(
                            M[m][j][i] + rnd(g - M[m][j][i], c.mom_shift, self.mode),
                            c.grad_bits,
                            flags,
                            Flag.MOM_SAT,
                        )
                        u = (cc > 0) - (cc < 0)
                    elif c.mom_shift:
                        M[m][j][i] = sat(
                            M[m][j][i] - rnd(M[m][j][i], c.mom_shift, self.mode) + g,
                            c.grad_bits,
                            flags,
                            Flag.MOM_SAT,
                        )
                        u = M[m][j][i]
                    else:
                        u = g
                    prod = u * c.lr_mant[m]
                    if c.update_rounding.value == "stochastic":
                        r = 0
                        for _ in range(c.sr_bits):
                            bit = state & 1
                            state = (state >> 1) ^ (c.lfsr_taps if bit else 0)
                            r = (r << 1) | bit
                        dw = (prod + (r << (s - c.sr_bits) if s >= c.sr_bits else r >> (c.sr_bits - s))) >> s
                    else:
                        dw = rnd(prod, s, c.update_rounding.value)
                    self.W[m][j][i] = sat(self.W[m][j][i] - dw + bump, c.w_bits, flags, Flag.W_SAT)
                    G[m][j][i] = 0
        return flags, state


def flags_of(s):
    out = Flag(0)
    for f in s:
        out |= f
    return out


NARROW = dict(
    dt_s=0.5e-3,
    n_steps=70,
    coef_frac=12,
    v_bits=8,
    v_frac=6,
    i_bits=12,
    i_frac=7,
    w_bits=8,
    lam_bits=12,
    lam_frac=8,
    grad_bits=12,
    recip_min=0.25,
    recip_bits=12,
    recip_seed_bits=4,
    exp_frac=10,
    prob_frac=10,
    loss_scale_log2=-3,
    input_capacity=16,
)

CASES = {
    # Two hidden layers: exercises layer order in a step and the snapshot rule.
    "deep-narrow": dict(
        sizes=(3, 5, 4, 2),
        w_frac=(4, 5, 5),
        record_capacity=30,
        optimizer="lion",
        silent_threshold=(1.0, 1.0, 0.3),
        batch_size=6,
        lr_mant=(40000, 50000, 60000),
        lr_shift=(14, 15, 15),
        silent_bump=0.0625,
        **NARROW,
    ),
    "shallow-narrow-sgd": dict(
        sizes=(4, 6, 3),
        w_frac=(4, 5),
        record_capacity=6,
        optimizer="sgd",
        mom_shift=2,
        lr_shift=(9, 10),
        lr_mant=(3, 5),
        lr_bits=4,
        **NARROW,
    ),
    "shallow-floor-nostop": {
        **NARROW,
        **dict(
            sizes=(4, 6, 3),
            w_frac=(4, 5),
            record_capacity=40,
            state_rounding="floor",
            update_rounding="half_up",
            early_stop=False,
            recip_min=1.0,
        ),
    },
    "up5k-small": dict(sizes=(5, 12, 3), n_steps=200, record_capacity=64),
    # §5.6 revival: two hidden layers (injections in both) with an injection near lambda's
    # range, so that it saturates; and the up5k words.
    "deep-narrow-revive": dict(
        sizes=(3, 5, 4, 2),
        w_frac=(4, 5, 5),
        record_capacity=30,
        batch_size=6,
        lr_mant=(40000, 50000, 60000),
        lr_shift=(14, 15, 15),
        silent_threshold=(1.0, 1.0, 1.0),
        revive_hidden=380.0,  # R = 2027 LSB of the 12-bit lambda: near its range
        **NARROW,
    ),
    "up5k-small-revive": dict(sizes=(5, 12, 3), n_steps=200, record_capacity=64, revive_hidden=4.0),
    # Adam with a short v mantissa and few ROM address bits: exercises encoding and ROM edges.
    "adam-narrow": dict(
        sizes=(4, 6, 3),
        w_frac=(4, 5),
        record_capacity=40,
        v_mant_bits=5,
        v_exp_bits=5,
        rsqrt_index_bits=3,
        rsqrt_bits=10,
        adam_shift1=2,
        adam_shift2=4,
        lr_mant=(200, 300),
        lr_shift=(4, 4),
        lr_bits=9,
        **NARROW,
    ),
    # I narrower than the weights: each weight is rounded to I's LSB when fanned in (§3.2).
    "narrow-current": dict(
        sizes=(5, 12, 3),
        n_steps=200,
        record_capacity=64,
        v_bits=16,
        v_frac=10,
        i_bits=16,
        i_frac=8,
        lam_bits=16,
        lam_frac=8,
        grad_bits=16,
        state_rounding="floor",
    ),
}


#: Weight mean and spread as fractions of the word range per case: mostly excitatory so that
#: spikes reach the outputs; the SGD case is strongly mixed to drive V below its range.
W_STATS = {
    "deep-narrow": (0.3, 0.25),
    "shallow-narrow-sgd": (0.2, 0.5),
    "shallow-floor-nostop": (0.3, 0.25),
    "up5k-small": (0.3, 0.25),
    # Weaker weights: more silent hidden neurons and silent labels for the revival.
    "deep-narrow-revive": (0.2, 0.3),
    "up5k-small-revive": (0.12, 0.3),
    "narrow-current": (0.3, 0.25),
    "adam-narrow": (0.3, 0.25),
}


def random_case(cfg, rng, n_samples, name):
    """Random weights (W_STATS), 2 n_in + 2 input spikes in the first half of the trial, labels."""
    top = 2.0 ** (cfg.w_bits - 1)
    mean, std = W_STATS[name]
    weights = [
        np.clip(np.round(rng.normal(mean * top, std * top, (b, a))), -top, top - 1).astype(np.int64)
        for a, b in zip(cfg.sizes, cfg.sizes[1:])
    ]
    n_in = cfg.sizes[0]
    k = 2 * n_in + 2
    times = rng.uniform(0, 0.5 * cfg.t_max_s, (n_samples, k))
    ids = rng.integers(0, n_in, (n_samples, k))
    labels = rng.integers(0, cfg.sizes[-1], n_samples)
    return weights, times, ids, labels


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_golden_matches_reference_bit_for_bit(name, seed):
    cfg = CoreConfig(**CASES[name])
    rng = np.random.default_rng(1000 * seed + len(name))
    n_b = 6
    weights, times, ids, labels = random_case(cfg, rng, n_b, name)
    core = FixedCore(cfg, weights)
    ref = RefCore(cfg, weights)
    # As if a previous minibatch had left these hidden neurons dead (§5.6).
    dead = rng.random(cfg.n_hidden) < 0.7
    core.dead[:] = dead
    ref.dead = dead.tolist()
    _, grads, res = core.gradient((times, ids), labels)

    G = [[[0] * a for _ in range(b)] for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    ref_flags = Flag(0)
    for b in range(n_b):
        inputs = [
            (int(s), int(i))
            for s, i in zip(res.in_step[b, : res.in_count[b]], res.in_id[b, : res.in_count[b]])
        ]
        fwd = ref.forward(inputs)
        # Forward: record, first spikes, final state, flags, last step.
        n_rec = res.rec_count[b]
        got = [
            (int(res.rec_step[b, q]), int(res.rec_neuron[b, q]), int(res.rec_cur[b, q])) for q in range(n_rec)
        ]
        off = np.cumsum((0,) + cfg.sizes[1:])
        want = [(st, int(off[l]) + j, cur) for st, l, j, cur in fwd["rec"]]
        assert got == want, f"record differs, sample {b}"
        assert [
            tuple(x) for x in np.stack([res.first_step[b], res.first_cur[b], res.first_v[b]], 1).tolist()
        ] == [tuple(f) for f in fwd["first"]]
        assert res.n_end[b] == fwd["n_end"]
        assert res.final_v[b].tolist() == sum(fwd["V"], [])
        assert res.final_cur[b].tolist() == sum(fwd["I"], [])
        assert res.spiked[b].tolist() == sum(fwd["spiked"], [])
        n_hid = cfg.n_hidden
        assert res.vmax[b].tolist() == sum(fwd["vmax"], []), f"vmax differs, sample {b}"
        assert res.vmax_step[b].tolist() == sum(fwd["vstep"], []), f"vmax step differs, sample {b}"
        assert len(res.vmax[b]) == n_hid
        bflags, lam, label_spiked = ref.backward(fwd, inputs, int(labels[b]), G)
        assert res.active[b] == label_spiked
        assert (res.active[b] or res.n_revived[b] > 0) == (lam is not None)
        assert Flag(int(res.flags[b])) == flags_of(fwd["flags"] | bflags), f"flags differ, sample {b}"
        ref_flags |= flags_of(fwd["flags"] | bflags)
        if b == n_b - 1 and lam is not None:
            assert res.final_lam_v.tolist() == sum(lam[0], [])
            assert res.final_lam_i.tolist() == sum(lam[1], [])
    for m in range(cfg.n_layers):
        assert res.grads_raw[m].tolist() == G[m], f"gradient of matrix {m} differs"
    assert ((res.active > 0) | (res.n_revived > 0)).sum() >= 1, "no sample reaches the backward pass"

    # Update, twice (momentum carries over), with the LFSR sequence.
    M = [[[0] * a for _ in range(b)] for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    V = [[[(0, 0)] * a for _ in range(b)] for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    lfsr = cfg.lfsr_seed
    for it in range(2):
        if it:
            _, _, res = core.gradient((times, ids), labels)
            G = [g.tolist() for g in res.grads_raw]
        if it:
            for b in range(n_b):  # the reference notes this minibatch's fired bits in backward()
                inputs = [(int(s_), int(i)) for s_, i in zip(res.in_step[b, : res.in_count[b]],
                                                               res.in_id[b, : res.in_count[b]])]
                ref.backward(ref.forward(inputs), inputs, int(labels[b]), [[[0] * a for _ in range(bb)]
                             for a, bb in zip(cfg.sizes, cfg.sizes[1:])])
        bump_layer = core.bump_layer()
        uflags = core.update()
        ref.end_of_minibatch()
        assert core.dead.tolist() == ref.dead
        rflags, lfsr = ref.update(G, M, V, lfsr, bump_layer)
        assert uflags == flags_of(rflags)
        assert core.lfsr_state == lfsr
        for m in range(cfg.n_layers):
            assert core.weights_raw[m].tolist() == ref.W[m]
            assert core.momentum_raw[m].tolist() == M[m]
            packed = [[(e << cfg.v_mant_bits) | mant for e, mant in row] for row in V[m]]
            assert core.second_moment_raw[m].tolist() == packed
            assert not core.grads_raw[m].any()


def test_cases_reach_the_edges():
    """The random cases above are only worth something if they saturate, clamp and overflow."""
    seen = Flag(0)
    bumped = False
    revived = revived_masked = revive_lam_sat = 0
    for name, kw in CASES.items():
        cfg = CoreConfig(**kw)
        for seed in range(4):
            rng = np.random.default_rng(1000 * seed + len(name))
            weights, times, ids, labels = random_case(cfg, rng, 6, name)
            core = FixedCore(cfg, weights)
            core.dead[:] = rng.random(cfg.n_hidden) < 0.7
            _, _, res = core.gradient((times, ids), labels)
            if cfg.revive_hidden:
                revived += int(res.n_revived.sum())
                revived_masked += int(((res.active == 0) & (res.n_revived > 0)).sum())
                revive_lam_sat += int(np.any(res.flags & int(Flag.LAM_SAT)))
            bumped |= core.bump_layer() >= 0
            core.update()
            seen |= core.flags
    for flag in (
        Flag.V_SAT,
        Flag.I_SAT,
        Flag.LAM_SAT,
        Flag.GRAD_SAT,
        Flag.W_SAT,
        Flag.RECIP_CLAMP,
        Flag.REC_OVF,
    ):
        assert flag in seen, f"no random case raises {flag.name}"
    assert bumped
    # §5.6: injections happen, also in masked samples, and the revival cases saturate lambda.
    assert revived > 0 and revived_masked > 0 and revive_lam_sat > 0
