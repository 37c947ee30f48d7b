"""NIR in and out: evcore networks as NIR graphs (the ``nir`` package) and NIR graphs as evcore
networks, fixed-point cores and RTL runs.

    graph = network_to_nir(net)                 # float Network -> nir.NIRGraph
    graph = core_to_nir(core)                   # FixedCore -> its dequantised weights, CoreConfig in metadata
    net = nir_to_network("graph.nir")           # Affine/Linear + CubaLIF (+ CubaLI) -> Network
    core = nir_to_core("graph.nir", "up5k")     # ... -> FixedCore (also runs on RtlCore)

The mapping and its scale factors are specified in docs/nir.md. In short: NIR's CubaLIF is

    tau_syn dI/dt = -I + w_in S,   tau_mem dv/dt = (v_leak - v) + r I,

with S the output of the Affine/Linear node before it, a sum of unit-area Dirac impulses
weighted by W. A spike of input i therefore adds w_in W_ji / tau_syn to I_j, and V relaxes
towards r I. evcore's neuron (docs/eventprop.md §1) adds W_ji to I_j and relaxes V towards I
with threshold theta, so the evcore weight is

    W_evcore[j, i] = W[j, i] * (r_j w_in_j / tau_syn) * (theta / v_threshold_j),

exact because I scaled by r and V scaled by theta / v_threshold_j change no spike time. Export
writes W_evcore unchanged with r = 1, w_in = tau_syn and v_threshold = theta, whose factor is
exactly 1.0: a round trip gives the same weights bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden.config import ConfigError as CoreConfigError
from ..golden.config import CoreConfig
from ..golden.core import FixedCore
from ..golden.eventprop import ConfigError, LifParameters, Network

__all__ = [
    "NirError",
    "NirImport",
    "network_to_nir",
    "core_to_nir",
    "export_checkpoint",
    "read_graph",
    "nir_to_network",
    "nir_to_core",
    "import_nir",
    "core_config_for",
    "random_inputs",
    "compare_on_rtl",
    "CORE_PRESETS",
]

#: Version of the evcore keys in a graph's metadata (all prefixed ``evcore_``).
METADATA_FORMAT = 1

#: ``--core`` names: CoreConfig presets, and "graph" for the CoreConfig a graph's metadata carries.
CORE_PRESETS = {"up5k": CoreConfig.up5k, "ecp5-85f": CoreConfig.ecp5_85f}

#: Time constants of different neurons (or layers) count as equal within this relative tolerance:
#: a graph written in float32 by another library stores 5 ms as 5.0000002e-3.
TAU_RTOL = 1e-6


class NirError(ValueError):
    """A NIR file or graph evcore cannot read or represent; the message names the node and parameter."""


def _nir():
    import nir  # imported here: `evcore` without NIR work does not pay for h5py

    return nir


# ---------------------------------------------------------------------------------------------
# Spike-time encoding of the inputs (graph metadata)


def encoding_metadata(dataset: str | None) -> dict:
    """How a data set's features become the input spikes, for the graph's metadata."""
    from . import datasets as ds

    if dataset == "yinyang":
        return {"dataset": "yinyang", "encoder": "encode_yinyang",
                "rule": "input k in 0..3 spikes once at x_k * t_span_s; input 4 (bias) once at bias_time_s; "
                        "x = (x, y, 1 - x, 1 - y) in [0, 1]",
                "t_span_s": ds.YINYANG_T_SPAN_S, "bias_time_s": ds.YINYANG_BIAS_TIME_S}
    if dataset == "mnist":
        return {"dataset": "mnist", "encoder": "encode_mnist",
                "rule": "pixel p = round(x * 256) spikes once at (1 - p / 255) * t_max_s if p > 1",
                "t_max_s": ds.MNIST_T_MAX_S}
    return {"dataset": dataset or "", "rule": "unknown: input spikes are given as (time in s, input index)"}


# ---------------------------------------------------------------------------------------------
# Export


def network_to_nir(net: Network, dataset: str | None = None, core_cfg: CoreConfig | None = None):
    """The float network as a NIR graph: Input -> (Linear -> CubaLIF)... -> Output, the last
    neuron node a CubaLI for the vmax readout. Parameters per docs/nir.md (r = 1, w_in = tau_syn,
    v_threshold = theta, v_leak = v_reset = 0; times in seconds)."""
    nir = _nir()
    p = net.params
    nodes = {"input": nir.Input(input_type={"input": np.array([net.sizes[0]])})}
    edges = []
    prev = "input"
    n_layers = len(net.weights)
    for l, w in enumerate(net.weights):
        n = w.shape[0]
        lin = f"linear_{l}"
        nodes[lin] = nir.Linear(weight=np.ascontiguousarray(w, dtype=np.float64))
        common = dict(tau_syn=np.full(n, p.tau_syn_s), tau_mem=np.full(n, p.tau_mem_s), r=np.ones(n),
                      v_leak=np.zeros(n), w_in=np.full(n, p.tau_syn_s))
        if net.readout == "vmax" and l == n_layers - 1:
            neuron = f"cubali_{l}"
            nodes[neuron] = nir.CubaLI(**common)
        else:
            neuron = f"cubalif_{l}"
            nodes[neuron] = nir.CubaLIF(**common, v_threshold=np.full(n, p.theta), v_reset=np.zeros(n))
        edges += [(prev, lin), (lin, neuron)]
        prev = neuron
    nodes["output"] = nir.Output(output_type={"output": np.array([net.sizes[-1]])})
    edges.append((prev, "output"))
    meta = {
        "evcore_format": METADATA_FORMAT,
        "evcore_readout": net.readout,
        "evcore_t_max_s": float(p.t_max_s),
        # The threshold of a network without CubaLIF nodes (a single CubaLI layer) lives only here.
        "evcore_theta": float(p.theta),
        "evcore_time_unit": "s",
        "evcore_encoding": json.dumps(encoding_metadata(dataset)),
    }
    if core_cfg is not None:
        meta["evcore_core_config"] = core_cfg.to_json()
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def core_to_nir(core: FixedCore, dataset: str | None = None):
    """A fixed-point core as a NIR graph: its dequantised weights (raw * 2**-w_frac, exact in
    float64), its time constants and threshold, and its CoreConfig (JSON) in the metadata."""
    return network_to_nir(core.to_float(), dataset, core.cfg)


def export_checkpoint(checkpoint: str | Path, out: str | Path):
    """Write an evcore checkpoint (float or fixed-point) as a NIR file; returns the graph."""
    from .methods import is_method_checkpoint
    from .train import checkpoint_kind, load_checkpoint, load_fixed_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    if is_method_checkpoint(path):
        raise ValueError(f"{path} is a spiking-MLP / smooth-QIF checkpoint; NIR export covers the "
                         "EventProp LIF networks (float or fixed-point)")
    if checkpoint_kind(path) == "fixed":
        core, dataset = load_fixed_checkpoint(path)
        graph = core_to_nir(core, dataset)
    else:
        net, cfg = load_checkpoint(path)
        graph = network_to_nir(net, cfg.dataset)
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise FileNotFoundError(f"cannot write {out}: directory {out.parent} does not exist")
    try:
        _nir().write(out, graph)
    except OSError as err:
        raise ValueError(f"cannot write {out} ({err.strerror or type(err).__name__})") from None
    return graph


# ---------------------------------------------------------------------------------------------
# Reading and checking a graph


def read_graph(path: str | Path):
    """nir.read with one-line errors for a missing, non-HDF5 or malformed file."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise FileNotFoundError(f"NIR file {path} {what}")
    nir = _nir()
    try:
        return nir.read(path)
    except OSError:
        raise NirError(f"{path} is not a NIR file (not HDF5)") from None
    except (KeyError, ValueError, TypeError, AssertionError, AttributeError, IndexError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NirError(f"{path} is not a valid NIR graph ({type(err).__name__}: {text})") from None


@dataclass
class _Layer:
    """One Linear/Affine -> CubaLIF/CubaLI pair of the chain, in NIR's parameters."""

    lin_name: str
    weight: np.ndarray
    neuron_name: str
    spiking: bool
    tau_syn: np.ndarray
    tau_mem: np.ndarray
    r: np.ndarray
    w_in: np.ndarray
    v_threshold: np.ndarray | None


def _node_kind(name: str, node) -> str:
    nir = _nir()
    kinds = [(nir.Input, "input"), (nir.Output, "output"), (nir.Affine, "linear"), (nir.Linear, "linear"),
             (nir.CubaLIF, "lif"), (nir.CubaLI, "li")]
    for cls, kind in kinds:
        if type(node) is cls:
            return kind
    kind = type(node).__name__
    if kind in ("Conv1d", "Conv2d"):
        raise NirError(f"node {name!r}: convolutions ({kind}) cannot be represented; evcore layers are "
                       "fully connected (Affine/Linear)")
    if kind == "NIRGraph":
        raise NirError(f"node {name!r}: nested graphs (subgraphs) are not supported; flatten the graph")
    raise NirError(f"node {name!r}: {kind} nodes cannot be represented; evcore reads Input, Affine/Linear, "
                   "CubaLIF, CubaLI and Output")


def _chain(graph) -> list:
    """Node names from the Input to the Output; errors for anything but a single chain."""
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NirError(f"edge {a} -> {b}: no node named {end!r} "
                               "(ports of subgraphs are not supported)")
    kinds = {name: _node_kind(name, node) for name, node in nodes.items()}
    succ = {name: [] for name in nodes}
    pred = {name: [] for name in nodes}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
    # Recurrent edges first: a cycle would otherwise show up as a fan-out.
    state = dict.fromkeys(nodes, 0)  # 0 new, 1 on the stack, 2 done
    for root in nodes:
        if state[root]:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[name] = 2
                stack.pop()
            elif state[nxt] == 1:
                raise NirError(f"recurrent edge {name} -> {nxt}: evcore networks are feed-forward")
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    inputs = [n for n, k in kinds.items() if k == "input"]
    outputs = [n for n, k in kinds.items() if k == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"the graph needs exactly one Input and one Output node, has {len(inputs)} and "
                       f"{len(outputs)}")
    order = [inputs[0]]
    while kinds[order[-1]] != "output":
        here = order[-1]
        if len(succ[here]) != 1:
            what = "leads nowhere" if not succ[here] else f"fans out to {', '.join(succ[here])}"
            raise NirError(f"node {here!r} {what}; evcore reads a single chain Input -> ... -> Output")
        nxt = succ[here][0]
        if len(pred[nxt]) != 1:
            raise NirError(f"node {nxt!r} has {len(pred[nxt])} inputs ({', '.join(pred[nxt])}); "
                           "evcore reads a single chain")
        order.append(nxt)
    missing = sorted(set(nodes) - set(order))
    if missing:
        raise NirError(f"node {missing[0]!r} is not on the path from {inputs[0]!r} to {outputs[0]!r}")
    return [(name, kinds[name]) for name in order]


def _vector(node_name: str, param: str, value, n: int) -> np.ndarray:
    try:
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    except (ValueError, TypeError):
        shape = np.shape(value)
        raise NirError(f"node {node_name!r}: {param} has shape {shape}, expected ({n},)") from None
    if not np.isfinite(v).all():
        raise NirError(f"node {node_name!r}: {param} contains non-finite values")
    return v


def _layers(graph) -> tuple[int, list]:
    """(input size, [_Layer]) of a chain graph, each parameter checked against what evcore models."""
    nir = _nir()
    chain = _chain(graph)
    in_name, _ = chain[0]
    shape = np.asarray(graph.nodes[in_name].input_type["input"]).reshape(-1)
    if shape.size != 1 or int(shape[0]) < 1:
        raise NirError(f"node {in_name!r}: input shape {tuple(int(s) for s in shape)} must be one positive "
                       "size (evcore inputs are a vector of spike sources)")
    n_in = int(shape[0])
    body = chain[1:-1]
    if not body:
        raise NirError("the graph has no layers between its Input and its Output")
    layers = []
    width = n_in
    for k in range(0, len(body), 2):
        lin_name, lin_kind = body[k]
        if lin_kind != "linear":
            raise NirError(f"node {lin_name!r}: expected an Affine or Linear node here (evcore layers are "
                           f"Affine/Linear -> CubaLIF), got {type(graph.nodes[lin_name]).__name__}")
        if k + 1 >= len(body) or body[k + 1][1] not in ("lif", "li"):
            raise NirError(f"node {lin_name!r}: must be followed by a CubaLIF or CubaLI node")
        neuron_name, neuron_kind = body[k + 1]
        lin = graph.nodes[lin_name]
        w = np.asarray(lin.weight, dtype=np.float64)
        if w.ndim != 2:
            raise NirError(f"node {lin_name!r}: weight has shape {w.shape}, expected (n_out, n_in)")
        if w.shape[1] != width:
            raise NirError(f"node {lin_name!r}: weight has {w.shape[1]} inputs, the layer before has {width}")
        if not np.isfinite(w).all():
            raise NirError(f"node {lin_name!r}: weight contains non-finite values")
        if isinstance(lin, nir.Affine):
            bias = np.asarray(lin.bias, dtype=np.float64)
            if np.any(bias != 0):
                raise NirError(f"node {lin_name!r}: bias = {bias.reshape(-1)[np.flatnonzero(bias)[0]]:g} "
                               "!= 0 (a constant input current; evcore neurons have none)")
        n = w.shape[0]
        node = graph.nodes[neuron_name]
        spiking = neuron_kind == "lif"
        if neuron_kind == "li" and k + 2 < len(body):
            raise NirError(f"node {neuron_name!r}: a CubaLI (non-spiking) layer can only be the last layer")
        vec = {p: _vector(neuron_name, p, getattr(node, p), n)
               for p in ("tau_syn", "tau_mem", "r", "v_leak", "w_in")}
        if spiking:
            vec["v_threshold"] = _vector(neuron_name, "v_threshold", node.v_threshold, n)
            vec["v_reset"] = _vector(neuron_name, "v_reset", node.v_reset, n)
        for p in ("tau_syn", "tau_mem"):
            v = vec[p]
            if np.any(v <= 0):
                raise NirError(f"node {neuron_name!r}: {p} = {v[np.argmax(v <= 0)]:g} must be positive")
            if not np.allclose(v, v[0], rtol=TAU_RTOL, atol=0):
                j = int(np.argmax(~np.isclose(v, v[0], rtol=TAU_RTOL, atol=0)))
                raise NirError(f"node {neuron_name!r}: per-neuron {p} differ ({v[0]:g} for neuron 0, "
                               f"{v[j]:g} for neuron {j}); evcore neurons share one {p}")
        if np.any(vec["v_leak"] != 0):
            j = int(np.flatnonzero(vec["v_leak"])[0])
            raise NirError(f"node {neuron_name!r}: v_leak = {vec['v_leak'][j]:g} (neuron {j}) != 0; evcore "
                           "membranes leak towards 0")
        if spiking:
            if np.any(vec["v_reset"] != 0):
                j = int(np.flatnonzero(vec["v_reset"])[0])
                raise NirError(f"node {neuron_name!r}: v_reset = {vec['v_reset'][j]:g} (neuron {j}) != 0; "
                               "evcore resets V to 0 after a spike")
            th = vec["v_threshold"]
            if np.any(th <= 0):
                raise NirError(f"node {neuron_name!r}: v_threshold = {th[np.argmax(th <= 0)]:g} must be "
                               "positive (V starts at 0)")
        layers.append(_Layer(lin_name, w, neuron_name, spiking, vec["tau_syn"], vec["tau_mem"], vec["r"],
                             vec["w_in"], vec.get("v_threshold")))
        width = n
    return n_in, layers


def _meta(graph, key: str, default=None):
    value = (graph.metadata or {}).get(key, default)
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return value


def _graph_of(graph_or_path):
    nir = _nir()
    return graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_graph(graph_or_path)


@dataclass
class NirImport:
    """What an import produced and how: the float network, the core if asked for, the notes."""

    network: Network
    #: Node names of the Linear/Affine and neuron node of each layer.
    layer_nodes: list
    #: Where the trial length came from: "argument", "metadata" or "default".
    t_max_source: str
    dataset: str
    core: FixedCore | None = None
    notes: list = field(default_factory=list)


def _import_network(graph, t_max_s: float | None) -> NirImport:
    n_in, layers = _layers(graph)
    first = layers[0]
    tau_syn, tau_mem = float(first.tau_syn[0]), float(first.tau_mem[0])
    for layer in layers[1:]:
        for p, ref in (("tau_syn", tau_syn), ("tau_mem", tau_mem)):
            v = getattr(layer, p)[0]
            if not math.isclose(v, ref, rel_tol=TAU_RTOL):
                raise NirError(f"node {layer.neuron_name!r}: {p} = {v:g} differs from {ref:g} of node "
                               f"{first.neuron_name!r}; evcore layers share one {p}")
    spiking = [lay for lay in layers if lay.spiking]
    # The shared threshold: the first spiking neuron's; other thresholds are folded into weights.
    meta_theta = _meta(graph, "evcore_theta")
    theta = float(spiking[0].v_threshold[0]) if spiking else float(meta_theta or 1.0)
    notes = []
    weights = []
    for layer in layers:
        # The layer's own tau_syn sets its jump (equal to the shared one within TAU_RTOL).
        factor = layer.r * layer.w_in / layer.tau_syn
        if layer.spiking:
            factor = factor * (theta / layer.v_threshold)
            if np.any(layer.v_threshold != theta):
                notes.append(f"node {layer.neuron_name!r}: thresholds other than {theta:g} folded into the "
                             f"weights of {layer.lin_name!r} (exact: V scaled per neuron)")
        if np.any(factor != 1.0):
            notes.append(f"node {layer.lin_name!r}: weights scaled by r w_in / tau_syn"
                         f"{' x theta / v_threshold' if layer.spiking else ''} "
                         f"(from {factor.min():g} to {factor.max():g})")
        weights.append(layer.weight * factor[:, None])
    if t_max_s is not None:
        source = "argument"
    elif _meta(graph, "evcore_t_max_s") is not None:
        t_max_s, source = float(_meta(graph, "evcore_t_max_s")), "metadata"
    else:
        t_max_s, source = LifParameters.t_max_s, "default"
    try:
        params = LifParameters(tau_mem_s=tau_mem, tau_syn_s=tau_syn, theta=theta, t_max_s=float(t_max_s))
    except ConfigError as err:
        raise NirError(f"node {first.neuron_name!r}: tau_mem = {tau_mem:g}, tau_syn = {tau_syn:g}, "
                       f"v_threshold = {theta:g}, t_max = {t_max_s:g} s: {err}") from None
    readout = "ttfs" if layers[-1].spiking else "vmax"
    sizes = (n_in, *(w.shape[0] for w in weights))
    net = Network(sizes, params, readout, weights)
    try:
        dataset = json.loads(_meta(graph, "evcore_encoding", "{}")).get("dataset", "")
    except (json.JSONDecodeError, TypeError, AttributeError):
        raise NirError("graph metadata evcore_encoding is not valid JSON") from None
    return NirImport(net, [(lay.lin_name, lay.neuron_name) for lay in layers], source, dataset or "",
                     notes=notes)


def nir_to_network(graph_or_path, t_max_s: float | None = None) -> Network:
    """A NIR graph (object or file) of Affine/Linear + CubaLIF (+ CubaLI) layers as a float
    Network; the trial length is ``t_max_s``, else the graph's evcore metadata, else 50 ms."""
    return _import_network(_graph_of(graph_or_path), t_max_s).network


# ---------------------------------------------------------------------------------------------
# Onto the fixed-point core


def core_config_for(net: Network, core="up5k", graph=None, neuron_node: str = "") -> CoreConfig:
    """The CoreConfig of a preset (or the graph's own, ``core="graph"``, or a CoreConfig) for this
    network's sizes, time constants and threshold; errors name the node and the field."""
    where = f"node {neuron_node!r}: " if neuron_node else ""
    p = net.params
    if isinstance(core, CoreConfig):
        base = core
    elif core == "graph":
        text = _meta(graph, "evcore_core_config") if graph is not None else None
        if text is None:
            raise NirError("--core graph: the graph carries no evcore CoreConfig in its metadata "
                           f"(give one of {', '.join(CORE_PRESETS)})")
        try:
            base = CoreConfig.from_json(str(text))
        except (CoreConfigError, ValueError, TypeError) as err:
            raise NirError(f"graph metadata evcore_core_config is not a valid CoreConfig ({err})") from None
    elif core in CORE_PRESETS:
        base = None
    else:
        raise NirError(f"unknown core {core!r}; valid: {', '.join(CORE_PRESETS)}, graph")
    n_layers = len(net.sizes) - 1
    changes = {"sizes": tuple(net.sizes), "tau_mem_s": p.tau_mem_s, "tau_syn_s": p.tau_syn_s,
               "theta": p.theta}
    try:
        if base is None:
            preset = CORE_PRESETS[core]()
            # Per-matrix fields of the two-matrix presets extended to deeper networks (last entry repeated).
            for name in ("w_frac", "silent_threshold"):
                v = getattr(preset, name)
                changes[name] = tuple(v[:n_layers]) + (v[-1],) * max(0, n_layers - len(v))
            return CORE_PRESETS[core](**changes, lr=(CoreConfig.PRESET_LR[0],) * n_layers)
        if tuple(base.sizes) != tuple(net.sizes):
            raise NirError(f"graph metadata CoreConfig has sizes {base.sizes}, the graph's layers "
                           f"{net.sizes}")
        return base.replace(**changes)
    except CoreConfigError as err:
        raise NirError(f"{where}the core cannot build tau_mem = {p.tau_mem_s:g} s, "
                       f"tau_syn = {p.tau_syn_s:g} s, theta = {p.theta:g}, sizes {net.sizes}: "
                       f"{err}") from None


def _core_from(imp: NirImport, core, graph) -> FixedCore:
    net = imp.network
    if net.readout != "ttfs":
        raise NirError(f"node {imp.layer_nodes[-1][1]!r}: a CubaLI readout cannot go onto the fixed-point "
                       "core, whose outputs are spiking (CubaLIF, first-spike readout); it runs in float")
    cfg = core_config_for(net, core, graph, imp.layer_nodes[0][1])
    if not math.isclose(cfg.t_max_s, net.params.t_max_s, rel_tol=1e-9):
        imp.notes.append(f"the core runs its own trial of {cfg.n_steps} steps of {cfg.dt_s * 1e3:g} ms "
                         f"({cfg.t_max_s * 1e3:g} ms), not the graph's {net.params.t_max_s * 1e3:g} ms")
    raw = []
    for l, w in enumerate(net.weights):
        fmt = cfg.w_fmt(l)
        r = np.floor(w * 2.0**fmt.frac + 0.5)
        bad = (r < fmt.min_raw) | (r > fmt.max_raw)
        if bad.any():
            j, i = np.unravel_index(int(np.argmax(np.abs(np.where(bad, w, 0)))), w.shape)
            raise NirError(f"node {imp.layer_nodes[l][0]!r}: weight[{j}, {i}] = {w[j, i]:g} "
                           f"(in evcore units, docs/nir.md) is beyond the {cfg.w_bits}-bit weight word "
                           f"{fmt} of matrix {l} "
                           f"(range [{fmt.min:g}, {fmt.max:g}])")
        raw.append(r.astype(np.int64))
    return FixedCore(cfg, raw)


def nir_to_core(graph_or_path, core="up5k", t_max_s: float | None = None) -> FixedCore:
    """A NIR graph on the fixed-point core: the preset ``core`` ("up5k", "ecp5-85f"), the graph's own
    CoreConfig ("graph") or a CoreConfig, with the graph's sizes, time constants and threshold.
    The core's trial length is its config's (n_steps * dt_s). The result also runs on the RTL:
    ``RtlCore(core.cfg, core.weights_raw)``."""
    graph = _graph_of(graph_or_path)
    return _core_from(_import_network(graph, t_max_s), core, graph)


def import_nir(graph_or_path, core=None, t_max_s: float | None = None) -> NirImport:
    """:func:`nir_to_network`, and :func:`nir_to_core` if ``core`` is given, with the notes of the
    conversion (what was scaled or folded) and where the trial length came from."""
    graph = _graph_of(graph_or_path)
    imp = _import_network(graph, t_max_s)
    if core is not None:
        imp.core = _core_from(imp, core, graph)
    return imp


# ---------------------------------------------------------------------------------------------
# The RTL check of an imported core


def random_inputs(n_inputs: int, n_samples: int, t_max_s: float, per_input: int = 1, seed: int = 0):
    """Every input spikes ``per_input`` times per sample at uniform times in [0, t_max / 4):
    (times_s, ids, counts), sorted by time."""
    rng = np.random.default_rng(seed)
    times = rng.uniform(0.0, 0.25 * t_max_s, size=(n_samples, n_inputs * per_input))
    ids = np.broadcast_to(np.tile(np.arange(n_inputs, dtype=np.int64), per_input), times.shape).copy()
    order = np.argsort(times, axis=1, kind="stable")
    return (np.take_along_axis(times, order, axis=1), np.take_along_axis(ids, order, axis=1),
            np.full(n_samples, times.shape[1], dtype=np.int64))


#: Every value the forward RTL exposes (FixedResult fields).
RTL_FIELDS = ("rec_count", "rec_step", "rec_neuron", "rec_cur", "first_step", "first_cur", "first_v",
              "final_v", "final_cur", "n_end", "flags", "vmax", "vmax_step", "layer_counts",
              "cycles_forward")


def compare_on_rtl(core: FixedCore, inputs) -> tuple:
    """Run ``inputs`` on the golden core and on RtlCore (Verilator); (golden result, RTL result,
    names of the fields that differ)."""
    from ..tb.core.rtl_core import RtlCore

    gold = core.run(inputs)
    rtl = RtlCore(core.cfg, core.weights_raw).run(inputs)
    bad = [f for f in RTL_FIELDS if not np.array_equal(getattr(gold, f), getattr(rtl, f))]
    return gold, rtl, bad


# ---------------------------------------------------------------------------------------------
# Command line (`evcore export`, `evcore import`; the parsers are in sw/cli.py)

RUNS_DIR = Path("runs")


def _describe(net: Network) -> str:
    p = net.params
    kind = "CubaLIF layers, " + ("first-spike readout" if net.readout == "ttfs" else "CubaLI readout")
    return (f"{'-'.join(map(str, net.sizes))} ({kind}), tau_mem {p.tau_mem_s * 1e3:g} ms, "
            f"tau_syn {p.tau_syn_s * 1e3:g} ms, theta {p.theta:g}")


def export_cli(args) -> int:
    graph = export_checkpoint(args.checkpoint, args.nir)
    n_layers = sum(1 for n in graph.nodes if n.startswith("linear_"))
    what = "fixed-point core (dequantised weights, CoreConfig in the metadata)" \
        if "evcore_core_config" in graph.metadata else "float network"
    print(f"wrote {args.nir}: {what}, {n_layers} Linear -> CubaLIF/CubaLI layers "
          f"(nir {_nir().version}; mapping: docs/nir.md)")
    return 0


def import_cli(args) -> int:
    from .train import TrainConfig, save_fixed_checkpoint

    if args.rtl_samples and args.core is None:
        raise ValueError("--rtl-samples runs the imported core on the RTL; give --core too")
    imp = import_nir(args.graph, core=args.core, t_max_s=args.t_max_s)
    net = imp.network
    dataset = args.dataset or imp.dataset
    source = {"argument": "--t-max-s", "metadata": "graph metadata", "default": "default"}[imp.t_max_source]
    print(f"read {args.graph}: {_describe(net)}, trial {net.params.t_max_s * 1e3:g} ms ({source})")
    for note in imp.notes:
        print(f"  {note}")
    stem = Path(args.graph).stem
    if imp.core is None:
        out = Path(args.out) if args.out else RUNS_DIR / f"nir-{stem}" / "checkpoint.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        cfg = TrainConfig(dataset=dataset, sizes=net.sizes, readout=net.readout,
                          init=tuple((0.0, 0.0) for _ in net.weights), params=net.params)
        np.savez(out, config=json.dumps(cfg.to_json()), **net.state_dict())
        print(f"wrote {out} (float network; `evcore eval` reads it)")
        return 0
    core = imp.core
    cfg = core.cfg
    fmts = ", ".join(str(cfg.w_fmt(l)) for l in range(cfg.n_layers))
    err = max(float(np.abs(w - q).max(initial=0)) for w, q in zip(net.weights, core.weights))
    device = args.core if args.core in CORE_PRESETS else None
    fits = f"; fits the {device}: {'yes' if cfg.fits(device) else 'NO (memories or DSPs)'}" if device else ""
    print(f"fixed-point core ({args.core}): {cfg.n_steps} steps of {cfg.dt_s * 1e3:g} ms, weights {fmts}, "
          f"largest quantisation error {err:.3g}{fits}")
    if args.rtl_samples:
        print(f"{args.rtl_samples} random samples on the RTL (Verilator; the first build takes about a "
              "minute) ...", flush=True)
        # As many spikes per input as the input buffer holds, up to 3 (more would only be dropped).
        per_input = max(1, min(3, cfg.input_capacity // cfg.sizes[0]))
        inputs = random_inputs(cfg.sizes[0], args.rtl_samples, cfg.t_max_s, per_input)
        gold, _, bad = compare_on_rtl(core, inputs)
        if bad:
            raise RuntimeError(f"the RTL differs from the golden core in {', '.join(bad)} (run `make sim`)")
        n_spikes = int(gold.rec_count.sum() + (gold.first_step < cfg.n_steps).sum())
        print(f"RTL = golden core bit for bit on {len(RTL_FIELDS)} fields ({n_spikes} spikes)")
    out = Path(args.out) if args.out else RUNS_DIR / f"nir-{stem}-{args.core}" / "checkpoint.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_fixed_checkpoint(out, core, dataset)
    print(f"wrote {out} (fixed-point core; `evcore eval` reads it)")
    return 0
