"""NIR in and out (sw/nir_graph.py, docs/nir.md) against the real `nir` package.

Round trips evcore -> NIR file -> evcore must be exact (spikes bit for bit, raw weights). A graph
built only with nir's own constructors, the way another library writes one (per-neuron r, w_in
and thresholds, w_in = 1, time constants that are not evcore's), is checked against a fine-step
RK4 integration of the NIR equations written here in the graph's own parameters: it shares no
code and no parameter conversion with evcore.
"""

import json

import h5py
import nir
import numpy as np
import pytest

from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore
from evcore.golden.eventprop import LifParameters, Network, SpikeBatch
from evcore.sw import nir_graph as ng
from evcore.sw.cli import main
from evcore.sw.train import PRESETS, load_checkpoint, load_fixed_checkpoint, save_fixed_checkpoint


def _random_spikes(n_in, n_samples, t_span_s, rng, per_input=2):
    """Each input spikes per_input times at uniform times in [0, t_span_s)."""
    times = rng.uniform(0, t_span_s, size=(n_samples, n_in * per_input))
    ids = np.tile(np.arange(n_in), per_input)[None, :].repeat(n_samples, axis=0)
    return SpikeBatch.from_arrays(times, ids, n_inputs=n_in)


def _same_spikes(a, b):
    for la, lb in zip(a.layers, b.layers):
        if la is None or lb is None:
            assert la is None and lb is None
            continue
        assert np.array_equal(la.counts, lb.counts)
        assert np.array_equal(la.times_s, lb.times_s)
        assert np.array_equal(la.ids, lb.ids)


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("readout", ["ttfs", "vmax"])
def test_float_round_trip_bit_for_bit(tmp_path, readout):
    rng = np.random.default_rng(1)
    params = LifParameters(tau_mem_s=20e-3, tau_syn_s=5e-3, theta=1.0, t_max_s=40e-3)
    net = Network.create((5, 16, 8, 3), params, readout, init=[(1.5, 0.8), (0.5, 0.5), (0.9, 0.3)], rng=rng)
    path = tmp_path / "net.nir"
    nir.write(path, ng.network_to_nir(net, "yinyang"))
    graph = nir.read(path)
    assert [type(graph.nodes[n]).__name__ for n in ("linear_0", "cubalif_0", "linear_2")] == \
        ["Linear", "CubaLIF", "Linear"]
    assert type(graph.nodes["cubalif_2" if readout == "ttfs" else "cubali_2"]).__name__ == \
        ("CubaLIF" if readout == "ttfs" else "CubaLI")
    back = ng.nir_to_network(path)
    assert back.sizes == net.sizes and back.readout == readout and back.params == params
    for w0, w1 in zip(net.weights, back.weights):
        assert np.array_equal(w0, w1)
    x = _random_spikes(5, 20, 30e-3, rng)
    r0, r1 = net.run(x), back.run(x)
    assert sum(int(la.counts.sum()) for la in r0.layers if la is not None) > 50  # the test exercises spikes
    _same_spikes(r0, r1)
    if readout == "ttfs":
        assert np.array_equal(r0.first_spike_times_s, r1.first_spike_times_s)
    else:
        assert np.array_equal(r0.v_max, r1.v_max)


def test_single_li_layer_keeps_theta(tmp_path):
    net = Network.create((4, 3), LifParameters(theta=0.7, t_max_s=30e-3), "vmax", rng=0)
    nir.write(tmp_path / "li.nir", ng.network_to_nir(net))
    back = ng.nir_to_network(tmp_path / "li.nir")
    assert back.params == net.params and np.array_equal(back.weights[0], net.weights[0])


def test_metadata_states_units_and_encoding(tmp_path):
    net = Network.create((5, 7, 3), PRESETS["yinyang"].params, rng=0)
    nir.write(tmp_path / "g.nir", ng.network_to_nir(net, "yinyang"))
    meta = nir.read(tmp_path / "g.nir").metadata
    assert meta["evcore_time_unit"] == "s" and meta["evcore_t_max_s"] == 0.2
    enc = json.loads(meta["evcore_encoding"])
    assert enc["dataset"] == "yinyang" and enc["t_span_s"] == 30e-3 and enc["bias_time_s"] == 0.0
    lif = nir.read(tmp_path / "g.nir").nodes["cubalif_0"]
    # docs/nir.md: r = 1, w_in = tau_syn (a unit-area impulse then adds W to I), v_threshold = theta.
    assert np.all(lif.r == 1) and np.all(lif.w_in == 5e-3) and np.all(lif.v_threshold == 1.0)
    assert np.all(lif.tau_mem == 20e-3) and np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)


def _small_core(rng, sizes=(5, 12, 3)):
    cfg = CoreConfig.up5k(sizes=sizes)
    net = Network.create(sizes, init=[(1.5, 0.8), (0.9, 0.4)], rng=rng)
    return FixedCore.from_float(cfg, net)


def test_fixed_round_trip_same_raw_weights(tmp_path):
    rng = np.random.default_rng(2)
    core = _small_core(rng)
    path = tmp_path / "core.nir"
    nir.write(path, ng.core_to_nir(core, "yinyang"))
    for which in ("graph", "up5k"):
        back = ng.nir_to_core(path, which)
        assert back.cfg.to_dict() == core.cfg.to_dict()
        for a, b in zip(core.weights_raw, back.weights_raw):
            assert np.array_equal(a, b)
    x = _random_spikes(5, 8, 30e-3, rng, per_input=1)
    g0, g1 = core.run(x), ng.nir_to_core(path, "graph").run(x)
    assert np.array_equal(g0.rec_step, g1.rec_step) and np.array_equal(g0.first_step, g1.first_step)


def test_cli_round_trips(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = PRESETS["yinyang"]
    net = Network.create(cfg.sizes, cfg.params, cfg.readout, init=cfg.init, rng=3)
    np.savez("float.npz", config=json.dumps(cfg.to_json()), **net.state_dict())
    core = FixedCore.from_float(CoreConfig.up5k(), net)
    save_fixed_checkpoint("fixed.npz", core, "yinyang")
    assert main(["export", "float.npz", "--nir", "f.nir"]) == 0
    assert main(["export", "fixed.npz", "--nir", "q.nir"]) == 0
    assert main(["import", "f.nir", "--out", "f_back.npz"]) == 0
    assert main(["import", "q.nir", "--core", "graph", "--out", "q_back.npz"]) == 0
    out = capsys.readouterr().out
    assert "largest quantisation error 0" in out
    net_back, cfg_back = load_checkpoint("f_back.npz")
    assert cfg_back.dataset == "yinyang" and net_back.params == cfg.params
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, net_back.weights))
    # The trial length and data set of the written checkpoint can be set on the command line.
    assert main(["import", "f.nir", "--t-max-s", "0.1", "--dataset", "mnist", "--out", "f_t.npz"]) == 0
    net_t, cfg_t = load_checkpoint("f_t.npz")
    assert net_t.params.t_max_s == 0.1 and cfg_t.dataset == "mnist"
    assert "trial 100 ms (--t-max-s)" in capsys.readouterr().out
    core_back, ds = load_fixed_checkpoint("q_back.npz")
    assert ds == "yinyang" and core_back.cfg.to_dict() == core.cfg.to_dict()
    assert all(np.array_equal(a, b) for a, b in zip(core.weights_raw, core_back.weights_raw))


# --- a graph from outside evcore ---------------------------------------------------------------

TAU_SYN, TAU_MEM = 4e-3, 15e-3  # not evcore's 5 ms / 20 ms: they come in through the config


def foreign_graph(seed=0, readout="lif", sizes=(4, 7, 3), type_check=True, **override):
    """An MLP as another library writes it, with nir's constructors only: Affine with zero bias,
    per-neuron r, w_in and thresholds, the default w_in = 1. ``override`` maps "node.param" to a
    value, e.g. {"lif1.v_leak": ...}; weights give jumps of about 1.5 and 0.9 thresholds."""
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = sizes
    th = rng.uniform(0.8, 1.5, n_hid)
    r1, w1 = rng.uniform(0.5, 2.0, n_hid), np.ones(n_hid)
    # The jump in units of the threshold is W w_in r / (tau_syn th): choose it ~ N(1.5, 0.8).
    W1 = rng.normal(1.5, 0.8, (n_hid, n_in)) * (TAU_SYN * th / (r1 * w1))[:, None]
    th2 = rng.uniform(0.9, 1.2, n_out)
    r2, w2 = np.ones(n_out), rng.uniform(0.5, 2.0, n_out)
    W2 = rng.normal(0.9, 0.4, (n_out, n_hid)) * (TAU_SYN * th2 / (r2 * w2))[:, None]
    params = {
        "aff0.weight": W1, "aff0.bias": np.zeros(n_hid),
        "lif1.tau_syn": np.full(n_hid, TAU_SYN), "lif1.tau_mem": np.full(n_hid, TAU_MEM), "lif1.r": r1,
        "lif1.v_leak": np.zeros(n_hid), "lif1.v_threshold": th, "lif1.v_reset": np.zeros(n_hid),
        "lif1.w_in": w1,
        "lin2.weight": W2,
        "out3.tau_syn": np.full(n_out, TAU_SYN), "out3.tau_mem": np.full(n_out, TAU_MEM), "out3.r": r2,
        "out3.v_leak": np.zeros(n_out), "out3.v_threshold": th2, "out3.v_reset": np.zeros(n_out),
        "out3.w_in": w2,
    }
    params.update(override)
    p = {name: {k.split(".")[1]: v for k, v in params.items() if k.startswith(name + ".")}
         for name in ("aff0", "lif1", "lin2", "out3")}
    if readout == "li":
        del p["out3"]["v_threshold"], p["out3"]["v_reset"]
        out_node = nir.CubaLI(**p["out3"])
    else:
        out_node = nir.CubaLIF(**p["out3"])
    nodes = {"in": nir.Input(input_type={"input": np.array([n_in])}), "aff0": nir.Affine(**p["aff0"]),
             "lif1": nir.CubaLIF(**p["lif1"]), "lin2": nir.Linear(**p["lin2"]), "out3": out_node,
             "out": nir.Output(output_type={"output": np.array([n_out])})}
    edges = [("in", "aff0"), ("aff0", "lif1"), ("lif1", "lin2"), ("lin2", "out3"), ("out3", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=type_check)


def _nir_rk4(v, i, h, node):
    """One RK4 step of NIR's CubaLIF/CubaLI between impulses, in the node's own parameters:
    tau_syn dI/dt = -I, tau_mem dv/dt = (v_leak - v) + r I."""
    def f(v, i):
        return ((node.v_leak - v) + node.r * i) / node.tau_mem, -i / node.tau_syn
    k1 = f(v, i)
    k2 = f(v + h / 2 * k1[0], i + h / 2 * k1[1])
    k3 = f(v + h / 2 * k2[0], i + h / 2 * k2[1])
    k4 = f(v + h * k3[0], i + h * k3[1])
    return (v + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
            i + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]))


def _hermite_crossing(h, v0, d0, v1, d1, th):
    """Fraction of the step where the cubic Hermite interpolant of v first exceeds th (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        s = 0.5 * (lo + hi)
        c = ((2 * s**3 - 3 * s**2 + 1) * v0 + (s**3 - 2 * s**2 + s) * h * d0
             + (-2 * s**3 + 3 * s**2) * v1 + (s**3 - s**2) * h * d1)
        lo, hi = (lo, s) if c > th else (s, hi)
    return hi


def nir_layer_reference(events, weight, node, t_max, h):
    """Fine-step integration of one NIR layer driven by (time, source) impulses through ``weight``.

    Each impulse adds w_in W[:, src] / tau_syn to I (the integral of tau_syn dI/dt = w_in S over a
    unit-area impulse). Returns the sorted (time, neuron) spikes for a CubaLIF node, or the V
    maximum per neuron and the largest |v''| seen (for the grid's error bound) for a CubaLI."""
    spiking = isinstance(node, nir.CubaLIF)
    n = weight.shape[0]
    v, cur = np.zeros(n), np.zeros(n)
    spikes, v_max, vpp = [], np.zeros(n), 0.0
    t = 0.0
    bounds = sorted(events) + [(t_max, None)]
    for t_next, src in bounds:
        n_sub = int(np.ceil((t_next - t) / h)) if t_next > t else 0
        hs = (t_next - t) / n_sub if n_sub else 0.0
        for _ in range(n_sub):
            v1, i1 = _nir_rk4(v, cur, hs, node)
            if spiking:
                for j in np.flatnonzero((v1 > node.v_threshold) & (v <= node.v_threshold)):
                    d0 = ((node.v_leak[j] - v[j]) + node.r[j] * cur[j]) / node.tau_mem[j]
                    d1 = ((node.v_leak[j] - v1[j]) + node.r[j] * i1[j]) / node.tau_mem[j]
                    s = hs * _hermite_crossing(hs, v[j], d0, v1[j], d1, node.v_threshold[j])
                    spikes.append((t + s, int(j)))
                    # Restart neuron j from the reset at the spike to the end of the step.
                    sub = _Slice(node, j)
                    _, ij = _nir_rk4(np.array([v[j]]), np.array([cur[j]]), s, sub)
                    vj, ij = _nir_rk4(np.array([node.v_reset[j]]), ij, hs - s, sub)
                    v1[j], i1[j] = vj[0], ij[0]
            else:
                d_prev = ((node.v_leak - v) + node.r * cur) / node.tau_mem
                d_next = ((node.v_leak - v1) + node.r * i1) / node.tau_mem
                vpp = max(vpp, float(np.abs(d_next - d_prev).max() / hs))
                v_max = np.maximum(v_max, v1)
            v, cur = v1, i1
            t += hs
        t = t_next
        if src is not None and t_next < t_max:
            cur = cur + node.w_in * weight[:, src] / node.tau_syn
    return sorted(spikes) if spiking else (v_max, vpp)


class _Slice:
    """Neuron j of a node as a one-neuron node (for restarting it after a spike)."""

    def __init__(self, node, j):
        for p in ("tau_syn", "tau_mem", "r", "v_leak"):
            setattr(self, p, np.asarray(getattr(node, p))[j : j + 1])


def test_foreign_graph_spikes_match_nir_integration():
    graph = foreign_graph(seed=4)
    t_max, h = 25e-3, 5e-6
    net = ng.nir_to_network(graph, t_max_s=t_max)
    assert net.params.tau_syn_s == TAU_SYN and net.params.tau_mem_s == TAU_MEM
    rng = np.random.default_rng(5)
    x = _random_spikes(4, 4, 12e-3, rng, per_input=2)
    res = net.run(x)
    n_total = 0
    for b in range(x.batch_size):
        t_in, id_in = x.sample(b)
        ref1 = nir_layer_reference(list(zip(t_in, id_in)), graph.nodes["aff0"].weight, graph.nodes["lif1"],
                                   t_max, h)
        ref2 = nir_layer_reference(ref1, graph.nodes["lin2"].weight, graph.nodes["out3"], t_max, h)
        for layer, ref in zip(res.layers, (ref1, ref2)):
            t_ev, j_ev = layer.sample(b)
            assert list(j_ev) == [j for _, j in ref], f"sample {b}: spiking neurons differ"
            # RK4 and Hermite errors are O((h / tau_syn)^4) tau_syn, 1e-15 s measured at this h;
            # a scale factor of the mapping wrong by 1e-6 would move spikes by ~1e-8 s.
            np.testing.assert_allclose(t_ev, [t for t, _ in ref], rtol=0, atol=1e-12)
            n_total += len(ref)
    assert n_total > 40


def test_foreign_li_readout_matches_nir_integration():
    graph = foreign_graph(seed=6, readout="li")
    t_max, h = 25e-3, 5e-6
    net = ng.nir_to_network(graph, t_max_s=t_max)
    assert net.readout == "vmax"
    x = _random_spikes(4, 4, 12e-3, np.random.default_rng(7), per_input=2)
    res = net.run(x)
    for b in range(x.batch_size):
        t_in, id_in = x.sample(b)
        ref1 = nir_layer_reference(list(zip(t_in, id_in)), graph.nodes["aff0"].weight, graph.nodes["lif1"],
                                   t_max, h)
        v_max, vpp = nir_layer_reference(ref1, graph.nodes["lin2"].weight, graph.nodes["out3"], t_max, h)
        # The grid maximum lies below the true one by at most max|v''| h^2 / 8 (plus RK4's O(h^4)).
        bound = vpp * h**2 / 8 + 1e-12
        assert np.all(res.v_max[b] >= v_max - 1e-12) and np.all(res.v_max[b] <= v_max + bound)


def test_foreign_graph_onto_the_core(tmp_path, capsys):
    graph = foreign_graph(seed=4)
    imp = ng.import_nir(graph, core="up5k")
    core, net = imp.core, imp.network
    cfg = core.cfg
    # Time constants and threshold come in through the config; the rest is the preset's.
    assert (cfg.tau_mem_s, cfg.tau_syn_s) == (TAU_MEM, TAU_SYN)
    assert cfg.theta == graph.nodes["lif1"].v_threshold[0]
    assert (cfg.dt_s, cfg.n_steps, cfg.w_bits) == (CoreConfig.up5k().dt_s, CoreConfig.up5k().n_steps, 16)
    # Quantisation: round half up, so every weight within half an LSB of the float one.
    for l, (w, q) in enumerate(zip(net.weights, core.weights)):
        assert np.abs(w - q).max() <= 0.5 * cfg.w_fmt(l).lsb
    assert any("folded" in n for n in imp.notes)
    res = core.run(_random_spikes(4, 6, 12e-3, np.random.default_rng(5), per_input=2))
    assert res.rec_count.sum() > 0 and (res.first_step < cfg.n_steps).any()
    # The same from the command line, into a fixed-point checkpoint.
    nir.write(tmp_path / "foreign.nir", graph)
    argv = ["import", str(tmp_path / "foreign.nir"), "--core", "up5k", "--out", str(tmp_path / "c.npz")]
    assert main(argv) == 0
    back, _ = load_fixed_checkpoint(tmp_path / "c.npz")
    assert all(np.array_equal(a, b) for a, b in zip(back.weights_raw, core.weights_raw))
    assert "folded into the weights" in capsys.readouterr().out


@pytest.mark.sim
def test_foreign_graph_on_rtl(tmp_path, capsys):
    core = ng.nir_to_core(foreign_graph(seed=4), "up5k")
    inputs = ng.random_inputs(4, 3, core.cfg.t_max_s, per_input=3, seed=1)
    gold, rtl, bad = ng.compare_on_rtl(core, inputs)
    assert bad == []
    assert gold.rec_count.sum() > 0 and np.array_equal(gold.predictions, rtl.predictions)
    nir.write(tmp_path / "foreign.nir", foreign_graph(seed=4))
    assert main(["import", str(tmp_path / "foreign.nir"), "--core", "up5k", "--rtl-samples", "2",
                 "--out", str(tmp_path / "c.npz")]) == 0
    assert "RTL = golden core bit for bit" in capsys.readouterr().out


# --- what evcore cannot represent, and malformed files -----------------------------------------


def _raises(graph, match, core=None):
    with pytest.raises(ng.NirError, match=match):
        if core is None:
            ng.nir_to_network(graph)
        else:
            ng.nir_to_core(graph, core)


@pytest.mark.parametrize("override, match", [
    ({"lif1.tau_syn": np.array([4e-3] * 6 + [5e-3])}, r"node 'lif1': per-neuron tau_syn differ"),
    ({"out3.tau_mem": np.array([15e-3, 15e-3, 20e-3])}, r"node 'out3': per-neuron tau_mem differ"),
    ({"out3.tau_mem": np.full(3, 20e-3)}, r"node 'out3': tau_mem = 0.02 differs from 0.015 of node 'lif1'"),
    ({"lif1.v_leak": np.array([0.0] * 6 + [0.1])}, r"node 'lif1': v_leak = 0.1 \(neuron 6\) != 0"),
    ({"out3.v_reset": np.full(3, -0.2)}, r"node 'out3': v_reset = -0.2 \(neuron 0\) != 0"),
    ({"aff0.bias": np.full(7, 0.5)}, r"node 'aff0': bias = 0.5 != 0"),
    ({"lif1.v_threshold": np.array([1.0] * 6 + [-1.0])}, r"node 'lif1': v_threshold = -1 must be positive"),
    ({"lif1.tau_syn": np.full(7, -1e-3)}, r"node 'lif1': tau_syn = -0.001 must be positive"),
    ({"lif1.tau_syn": np.full(7, TAU_MEM), "out3.tau_syn": np.full(3, TAU_MEM)},
     r"node 'lif1': tau_mem = 0.015, tau_syn = 0.015.*must differ"),
    ({"lif1.r": np.array([1.0] * 6 + [np.nan])}, r"node 'lif1': r contains non-finite values"),
    ({"lin2.weight": np.ones((3, 5)), "type_check": False},
     r"node 'lin2': weight has 5 inputs, the layer before has 7"),
])
def test_unrepresentable_parameters(override, match):
    _raises(foreign_graph(**override), match)


def test_unrepresentable_on_the_core():
    big = foreign_graph()
    big.nodes["lin2"].weight[1, 2] = 40 * TAU_SYN  # an evcore weight far beyond Q4.12's +-8
    _raises(big, r"node 'lin2': weight\[1, 2\] = .* beyond the 16-bit weight word Q4.12 of matrix 1", "up5k")
    _raises(foreign_graph(readout="li"), r"node 'out3': a CubaLI readout cannot go onto the fixed-point core",
            "up5k")
    # Equal time constants, but one the core's propagator cannot build at dt = 0.2 ms (alpha -> 0).
    tiny = foreign_graph(**{"lif1.tau_syn": np.full(7, 1e-5), "out3.tau_syn": np.full(3, 1e-5)})
    _raises(tiny, r"node 'lif1': the core cannot build tau_mem = 0.015 s, tau_syn = 1e-05 s.*alpha", "up5k")
    _raises(foreign_graph(), r"--core graph: the graph carries no evcore CoreConfig", "graph")
    _raises(foreign_graph(), r"unknown core 'up6k'", "up6k")
    # No hidden layer: the core needs one.
    nodes = {"in": nir.Input(input_type={"input": np.array([2])}), "lin": nir.Linear(weight=np.ones((2, 2))),
             "lif": nir.CubaLIF(tau_syn=np.full(2, 5e-3), tau_mem=np.full(2, 2e-2), r=np.ones(2),
                                v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
             "out": nir.Output(output_type={"output": np.array([2])})}
    shallow = nir.NIRGraph(nodes=nodes, edges=[("in", "lin"), ("lin", "lif"), ("lif", "out")])
    assert ng.nir_to_network(shallow).sizes == (2, 2)
    _raises(shallow, r"node 'lif': the core cannot build.*sizes must list an input, at least one hidden",
            "up5k")


def test_core_config_from_graph_must_match(tmp_path):
    core = _small_core(np.random.default_rng(0))
    graph = ng.core_to_nir(core)
    graph.metadata["evcore_core_config"] = CoreConfig.up5k().to_json()  # 5-200-3, not 5-12-3
    _raises(graph, r"CoreConfig has sizes \(5, 200, 3\), the graph's layers \(5, 12, 3\)", "graph")
    graph.metadata["evcore_core_config"] = '{"sizes": [5, 12, 3], "bogus": 1}'
    _raises(graph, r"evcore_core_config is not a valid CoreConfig", "graph")
    graph.metadata["evcore_encoding"] = "{not json"
    _raises(graph, r"metadata evcore_encoding is not valid JSON")


def _chain_graph(names_types, edges, n=3):
    """A graph of small nodes of the given types (Input, Output, Linear, CubaLIF, ...)."""
    make = {
        "Input": lambda: nir.Input(input_type={"input": np.array([n])}),
        "Output": lambda: nir.Output(output_type={"output": np.array([n])}),
        "Linear": lambda: nir.Linear(weight=np.eye(n) * 5e-3),
        "CubaLIF": lambda: nir.CubaLIF(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 2e-2), r=np.ones(n),
                                       v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n)),
        "CubaLI": lambda: nir.CubaLI(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 2e-2), r=np.ones(n),
                                     v_leak=np.zeros(n)),
        "LIF": lambda: nir.LIF(tau=np.full(n, 2e-2), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                               v_reset=np.zeros(n)),
        "Conv2d": lambda: nir.Conv2d(input_shape=(4, 4), weight=np.ones((1, 1, 3, 3)), stride=1, padding=1,
                                     dilation=1, groups=1, bias=np.zeros(1)),
    }
    nodes = {name: make[kind]() for name, kind in names_types.items()}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


CHAIN = {"in": "Input", "lin": "Linear", "lif": "CubaLIF", "out": "Output"}
CHAIN_EDGES = [("in", "lin"), ("lin", "lif"), ("lif", "out")]


@pytest.mark.parametrize("names_types, edges, match", [
    ({**CHAIN, "rec": "Linear"}, CHAIN_EDGES + [("lif", "rec"), ("rec", "lif")],
     r"recurrent edge (lif -> rec|rec -> lif)"),
    (CHAIN, CHAIN_EDGES + [("lif", "lif")], r"recurrent edge lif -> lif"),
    ({**CHAIN, "conv": "Conv2d"}, CHAIN_EDGES + [("in", "conv")], r"node 'conv': convolutions \(Conv2d\)"),
    ({**CHAIN, "lif": "LIF"}, CHAIN_EDGES, r"node 'lif': LIF nodes cannot be represented"),
    ({**CHAIN, "in2": "Input"}, CHAIN_EDGES + [("in2", "lin")],
     r"exactly one Input and one Output node, has 2"),
    ({**CHAIN, "lif2": "CubaLIF", "out2": "Output"}, CHAIN_EDGES + [("lin", "lif2"), ("lif2", "out2")],
     r"exactly one Input and one Output node, has 1 and 2"),
    ({**CHAIN, "lif2": "CubaLIF"}, CHAIN_EDGES + [("lin", "lif2")], r"node 'lin' fans out to lif, lif2"),
    ({**CHAIN, "x": "CubaLIF"}, CHAIN_EDGES, r"node 'x' is not on the path from 'in' to 'out'"),
    (CHAIN, [("in", "lin"), ("lin", "lif")], r"node 'lif' leads nowhere"),
    (CHAIN, CHAIN_EDGES + [("lin", "nowhere")], r"edge lin -> nowhere: no node named 'nowhere'"),
    ({"in": "Input", "lif": "CubaLIF", "out": "Output"}, [("in", "lif"), ("lif", "out")],
     r"node 'lif': expected an Affine or Linear node here"),
    ({"in": "Input", "lin": "Linear", "lin2": "Linear", "out": "Output"},
     [("in", "lin"), ("lin", "lin2"), ("lin2", "out")],
     r"node 'lin': must be followed by a CubaLIF or CubaLI"),
    ({"in": "Input", "lin": "Linear", "li": "CubaLI", "lin2": "Linear", "lif": "CubaLIF", "out": "Output"},
     [("in", "lin"), ("lin", "li"), ("li", "lin2"), ("lin2", "lif"), ("lif", "out")],
     r"node 'li': a CubaLI \(non-spiking\) layer can only be the last layer"),
    ({"in": "Input", "out": "Output"}, [("in", "out")], r"no layers between its Input and its Output"),
])
def test_unsupported_graphs(names_types, edges, match):
    _raises(_chain_graph(names_types, edges), match)


def test_nested_graph_and_input_shape():
    inner = _chain_graph(CHAIN, CHAIN_EDGES)
    outer = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}), "sub": inner,
                                "out": nir.Output(output_type={"output": np.array([3])})},
                         edges=[("in", "sub"), ("sub", "out")], type_check=False)
    _raises(outer, r"node 'sub': nested graphs \(subgraphs\) are not supported")
    g = _chain_graph(CHAIN, CHAIN_EDGES)
    g.nodes["in"] = nir.Input(input_type={"input": np.array([3, 2])})
    _raises(g, r"node 'in': input shape \(3, 2\) must be one positive size")
    g = _chain_graph(CHAIN, CHAIN_EDGES)
    g.nodes["lin"] = nir.Linear(weight=np.ones((1, 3, 3)))
    _raises(g, r"node 'lin': weight has shape \(1, 3, 3\), expected \(n_out, n_in\)")
    g = _chain_graph(CHAIN, CHAIN_EDGES)
    g.nodes["lif"].tau_mem = np.full(4, 2e-2)
    _raises(g, r"node 'lif': tau_mem has shape \(4,\), expected \(3,\)")


def test_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ng.read_graph(tmp_path / "missing.nir")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        ng.read_graph(tmp_path)
    (tmp_path / "text.nir").write_text("not a graph")
    with pytest.raises(ng.NirError, match=r"text.nir is not a NIR file \(not HDF5\)"):
        ng.read_graph(tmp_path / "text.nir")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(ng.NirError, match=r"other.h5 is not a valid NIR graph \(KeyError"):
        ng.read_graph(tmp_path / "other.h5")
    nir.write(tmp_path / "bad_type.nir", _chain_graph(CHAIN, CHAIN_EDGES))
    with h5py.File(tmp_path / "bad_type.nir", "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data="Quantum", dtype=h5py.string_dtype())
    with pytest.raises(ng.NirError, match=r"bad_type.nir is not a valid NIR graph \(AssertionError"):
        ng.read_graph(tmp_path / "bad_type.nir")
    nir.write(tmp_path / "no_param.nir", _chain_graph(CHAIN, CHAIN_EDGES))
    with h5py.File(tmp_path / "no_param.nir", "r+") as f:
        del f["node/nodes/lif/tau_mem"]
    with pytest.raises(ng.NirError, match=r"no_param.nir is not a valid NIR graph \(TypeError"):
        ng.read_graph(tmp_path / "no_param.nir")


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.nir").write_text("x")
    nir.write(tmp_path / "leak.nir", foreign_graph(**{"lif1.v_leak": np.full(7, 0.1)}))
    nir.write(tmp_path / "li.nir", foreign_graph(readout="li"))
    np.savez(tmp_path / "junk.npz", a=np.arange(2))
    cases = [
        (["import", "missing.nir"], "does not exist"),
        (["import", "text.nir"], "not a NIR file"),
        (["import", "leak.nir"], "node 'lif1': v_leak = 0.1"),
        (["import", "li.nir", "--core", "up5k"], "node 'out3': a CubaLI readout"),
        (["import", "li.nir", "--rtl-samples", "2"], "--rtl-samples runs the imported core on the RTL"),
        (["export", "missing.npz", "--nir", "x.nir"], "does not exist"),
        (["export", "junk.npz", "--nir", "x.nir"], "not an evcore checkpoint"),
    ]
    for argv, text in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("evcore: error: ") and text in err, (argv, err)
    net = Network.create((5, 7, 3), PRESETS["yinyang"].params, rng=0)
    np.savez("float.npz", config=json.dumps(PRESETS["yinyang"].to_json()), **net.state_dict())
    assert main(["export", "float.npz", "--nir", "no_dir/x.nir"]) == 2
    assert "directory no_dir does not exist" in capsys.readouterr().err
    (tmp_path / "a_dir").mkdir()
    assert main(["export", "float.npz", "--nir", "a_dir"]) == 2  # h5py cannot create a file there
    assert "cannot write a_dir" in capsys.readouterr().err
