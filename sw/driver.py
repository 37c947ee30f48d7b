"""Host driver of a board (docs/driver.md): the framed byte protocol behind `FixedCore`'s interface.

    transport = SerialTransport("/dev/ttyUSB1", baud=1_000_000)   # or a pty, or a ReplayTransport
    core = BoardCore(cfg, transport, weights_raw)                 # checks the identification word
    losses, grads, res = core.gradient(spikes, labels); core.update(); res = core.run(spikes)

Layers, from the wire up:

`Transport`
    Bytes in and out with a timeout: `SerialTransport` (pyserial: a USB-UART, or the pseudo-terminal
    of a simulated board, tb/link/sim_board.py), `ReplayTransport` (a recorded session, for tests).
`Link`
    One command outstanding (docs/protocol.md, "Resync rule"): a command frame (`hdl.protocol.command`)
    in a link frame (`hdl.link.encode_frame`) out, one response frame back (`decode_frames`). A link
    error frame means the command was dropped before the core, so it is resent after the line rests;
    a lost answer is resent only for commands that may run twice (ID, READ, WRITE, STATUS).
    Every failure is a `LinkError`: one line naming the port and what went wrong.
`BoardCore`
    `FixedCore` / `RtlCore`'s interface: ``set_weights_raw``, ``lr_mant``, ``run``, ``gradient``,
    ``update``, ``train_step``, ``grads_raw`` / ``momentum_raw`` / ``second_moment_raw``,
    ``flags``, the counters of each sample. The host sequence of a sample and of an update is
    `tb.core.host.run_sample` / `run_update`, the same coroutines the word-port and byte-link tests
    drive, here over frames: one statement of the sequence for every driver.

The golden backend stays `FixedCore` itself (no byte model of the protocol in Python): the
protocol's byte path is exercised against the RTL (the UART top under Verilator through a pty) and
by replaying that recorded traffic.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..golden.config import CoreConfig, Flag, Optimizer
from ..golden.core import FixedCore, FixedResult

__all__ = ["LinkError", "Transport", "SerialTransport", "ReplayTransport", "Link", "BoardCore",
           "read_session", "write_session", "parse_backend", "core_state", "restore_core_state",
           "board_factory", "board_cli", "add_board_arguments",
           "DEFAULT_BAUD"]

#: 1 Mbaud: 24 cycles per bit at 24 MHz, 48 at 48 MHz (docs/protocol.md, "UART").
DEFAULT_BAUD = 1_000_000


class LinkError(ValueError):
    """The board did not answer as the protocol says (timeout, bad frames, wrong configuration,
    a vanished port). A ValueError so that the CLI prints its one line (sw/cli.py main)."""


# --- transports ----------------------------------------------------------------------------------


class Transport:
    """Bytes to and from a board. `read` returns what arrived within `timeout_s` (maybe nothing)."""

    name = "transport"

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, timeout_s: float) -> bytes:
        raise NotImplementedError

    def discard_input(self) -> None:
        """Drop whatever arrived and was not read (after an error, docs/protocol.md)."""

    def close(self) -> None:
        pass


class SerialTransport(Transport):
    """A serial port through pyserial: a USB-UART, or the pseudo-terminal of a simulated board.

    `port` is a device path or a pyserial URL (``loop://`` echoes). Opening a missing port,
    and a read or write on a port that vanished (USB cable pulled, simulator gone), is a
    one-line `LinkError`.
    """

    #: Longest wait of one `read`.
    POLL_S = 0.02

    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        import serial

        try:
            import termios  # pyserial's flush and buffer resets raise termios.error, not OSError

            self._serial_exc = (serial.SerialException, termios.error)
        except ImportError:  # Windows
            self._serial_exc = (serial.SerialException,)
        self.name = port
        try:
            # A fixed read timeout: setting pyserial's timeout reconfigures the port (tcsetattr).
            self._port = serial.serial_for_url(port, baudrate=baud, timeout=self.POLL_S, write_timeout=10.0)
        except (serial.SerialException, OSError, ValueError) as err:
            reason = os.strerror(err.errno) if isinstance(getattr(err, "errno", None), int) else _short(err)
            raise LinkError(f"cannot open serial port {port}: {reason}") from None

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (*self._serial_exc, OSError) as err:
            raise LinkError(f"{self.name}: the serial port disappeared while writing "
                            f"({_short(err)})") from None

    def read(self, timeout_s: float) -> bytes:
        """What arrived, waiting for the first byte up to POLL_S (`Link` loops to its timeout)."""
        try:
            first = self._port.read(1)
            if not first:
                return b""
            return first + self._port.read(self._port.in_waiting)
        except (*self._serial_exc, OSError, TypeError) as err:
            # TypeError: pyserial's read after the fd was closed under it (a vanished pty).
            raise LinkError(f"{self.name}: the serial port disappeared while reading "
                            f"({_short(err)})") from None

    def discard_input(self) -> None:
        try:
            self._port.reset_input_buffer()
        except (*self._serial_exc, OSError) as err:
            raise LinkError(f"{self.name}: the serial port disappeared ({_short(err)})") from None

    def close(self) -> None:
        try:
            self._port.close()
        except (*self._serial_exc, OSError):
            pass


def _short(err) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class ReplayTransport(Transport):
    """A recorded session (`write_session`): every write must equal the next recorded command
    frame, and the read after it returns the recorded answer. A different byte is a `LinkError`
    naming the exchange; past the end of the recording nothing answers (a timeout)."""

    def __init__(self, exchanges: list[tuple[bytes, bytes]], name: str = "replay"):
        self.exchanges, self.name = list(exchanges), name
        self.position = 0
        self._pending = b""

    def write(self, data: bytes) -> None:
        if self.position >= len(self.exchanges):
            self._pending = b""
            self.position += 1
            return
        want, answer = self.exchanges[self.position]
        if data != want:
            raise LinkError(f"{self.name}: exchange {self.position}: the driver sent {data.hex(' ')}, "
                            f"the recording has {want.hex(' ')}")
        self._pending = answer
        self.position += 1

    def read(self, timeout_s: float) -> bytes:
        out, self._pending = self._pending, b""
        return out

    @property
    def finished(self) -> bool:
        return self.position == len(self.exchanges)


def write_session(path, exchanges, header: str = "") -> None:
    """A recorded session as text: ``> command frame`` / ``< answer`` lines of hex bytes."""
    lines = [f"# {h}" for h in header.splitlines()]
    for tx, rx in exchanges:
        lines += [f"> {tx.hex(' ')}", f"< {rx.hex(' ')}"]
    Path(path).write_text("\n".join(lines) + "\n")


def read_session(path) -> list[tuple[bytes, bytes]]:
    out, tx = [], None
    for line in Path(path).read_text().splitlines():
        if line.startswith("> "):
            tx = bytes.fromhex(line[2:])
        elif line.startswith("< "):
            out.append((tx, bytes.fromhex(line[2:])))
    return out


# --- the link ------------------------------------------------------------------------------------


def frame_of(cfg: CoreConfig, training: bool = True):
    """`hdl.protocol.Frame` of a config: the byte sizes of its fields."""
    from ..hdl.core import Core
    from ..hdl.protocol import Frame

    core = Core(cfg, training=training)
    core._MustUse__silence = True  # only its sizes are used; never elaborated
    return Frame(core)


class Link:
    """One command at a time over a `Transport`, with the resync rule of docs/protocol.md.

    `timeout_s`: how long to wait for an answer; `rest_s`: how long the line rests after an
    error before a resend (at least the board's inter-byte timeout, 1 ms by default);
    `retries`: resends after a link error frame or a lost answer (see `transact`).
    `exchanges`: if a list, every (command bytes, answer bytes) is appended (a recording).
    """

    def __init__(self, transport: Transport, frame, *, timeout_s: float = 1.0, rest_s: float = 0.005,
                 retries: int = 2, exchanges: list | None = None):
        self.transport, self.frame = transport, frame
        self.timeout_s, self.rest_s, self.retries = timeout_s, rest_s, retries
        self.exchanges = exchanges
        #: Bytes sent and received, frames exchanged, resends (for the throughput report).
        self.stats = {"tx_bytes": 0, "rx_bytes": 0, "commands": 0, "resends": 0}

    def transact(self, op, **fields) -> tuple:
        """Send `op` (an `hdl.protocol.Op`) with its fields; returns (Status, value) of the answer.

        A link error frame means a frame was dropped before the core: if no answer follows within
        `rest_s` (the error was about this command, not about stray bytes before it), the command
        is resent, whatever it is. A missing answer is resent only for ID, READ, WRITE and STATUS
        (PUSH, START, TRAIN and UPDATE must not run twice); then, or after `retries` resends,
        LinkError.
        """
        from ..hdl.link import LinkStatus, encode_frame
        from ..hdl.protocol import Op, command

        raw = encode_frame(command(self.frame, op, **fields))
        repeatable = op in (Op.ID, Op.READ, Op.WRITE, Op.STATUS)
        link_codes = {s.value for s in LinkStatus}
        problem = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["resends"] += 1
                time.sleep(self.rest_s)
                self.transport.discard_input()
            self.transport.write(raw)
            self.stats["tx_bytes"] += len(raw)
            self.stats["commands"] += 1
            answer, frames = self._receive(self.timeout_s, link_codes)
            if frames and all(f[0] in link_codes for f in frames):  # the answer may still follow
                answer, frames = self._receive(self.rest_s, link_codes, answer, wait_for_answer=True)
            if self.exchanges is not None:
                self.exchanges.append((raw, answer))
            answers = [f for f in frames if f[0] not in link_codes]
            if answers:
                return self._parse(op, answers[0])
            if frames:
                problem = f"the board answered {op.name} with the link error {LinkStatus(frames[0][0]).name}"
                continue
            problem = (f"no answer to {op.name} within {self.timeout_s:g} s"
                       + (f" ({len(answer)} bytes of garbage: {answer[:16].hex(' ')})" if answer else ""))
            if not repeatable:
                break
        raise LinkError(f"{self.transport.name}: {problem} (is the board connected and running an evcore "
                        f"bitstream at this baud rate?)")

    def _receive(self, timeout_s, link_codes, buf=b"", wait_for_answer=False):
        """(bytes received, the CRC-good frames in them) within `timeout_s`: returns at the first
        answer, or at the first link error frame unless `wait_for_answer`."""
        from ..hdl.link import decode_frames

        deadline = time.monotonic() + timeout_s
        while True:
            frames = decode_frames(buf).frames
            if any(f[0] not in link_codes for f in frames) or (frames and not wait_for_answer):
                return buf, frames
            left = deadline - time.monotonic()
            if left <= 0:
                return buf, frames
            chunk = self.transport.read(left)
            buf += chunk
            self.stats["rx_bytes"] += len(chunk)

    def _parse(self, op, inner):
        from ..hdl.protocol import Status, parse_response

        try:
            status, value, _ = parse_response(inner)
        except ValueError:
            raise LinkError(f"{self.transport.name}: unknown status byte 0x{inner[0]:02x} in the answer to "
                            f"{op.name}") from None
        if status not in (Status.OK, Status.TOO_MANY):
            raise LinkError(f"{self.transport.name}: the board refused {op.name}: {status.name}")
        return status, value


class _FrameBus:
    """The `tb.core.host` bus (write, read_many, start_and_wait) over a `Link`; its coroutines never
    suspend, so `_run` runs a host sequence to its end in one step."""

    def __init__(self, link: Link, busy_timeout_s: float):
        self.link, self.busy_timeout_s = link, busy_timeout_s

    async def write(self, region, addr, data):
        from ..hdl.core import Region
        from ..hdl.protocol import Op

        if region is Region.INPUT:  # an input spike: PUSH (TOO_MANY raises IN_OVF, as §3.1 says)
            self.link.transact(Op.PUSH, entry=int(data))
        else:
            self.link.transact(Op.WRITE, region=region, addr=int(addr), data=int(data))

    async def read_many(self, items):
        from ..hdl.protocol import Op

        return [self.link.transact(Op.READ, region=region, addr=int(addr))[1] for region, addr in items]

    async def start_and_wait(self, train=False, update=False):
        from ..hdl.protocol import Op

        op = Op.UPDATE if update else Op.TRAIN if train else Op.START
        self.link.transact(op)
        deadline = time.monotonic() + self.busy_timeout_s
        while self.link.transact(Op.STATUS)[1] & 1:
            if time.monotonic() > deadline:
                raise LinkError(f"{self.link.transport.name}: the core is still busy "
                                f"{self.busy_timeout_s:g} s after {op.name}")


def _run(coro):
    """Run a coroutine that never suspends (the `_FrameBus` host sequences) to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a host sequence suspended on a blocking bus")


# --- the core behind the link --------------------------------------------------------------------


@dataclass
class BoardInfo:
    id_word: int
    counters: dict


def _lazy(name: str, group: str):
    """A BoardCore attribute that is read from the board on first use after an update (lean mode)."""

    def get(self):
        self._refresh(group)
        return getattr(self, "_store" + name)

    def put(self, value):
        setattr(self, "_store" + name, value)

    return property(get, put)


class BoardCore:
    """The core on a board behind `FixedCore`'s interface, over the framed protocol.

    The chip holds the state (weights, gradient and moment words, Adam's v̂, LFSR, the §5.6 dead and
    fired bits); this object keeps a copy. `__init__` reads the identification word first: a board
    built for another CoreConfig is a one-line `LinkError` naming both hashes; then it loads the
    whole state (``weights_raw`` or zeros, cleared accumulators, LFSR seed), so a board is always
    in a known state after it.

    ``full_readback=True`` reads back everything each call changes, as `RtlCore` does: every value
    of each sample (the final state V, I or Λ, the vmax memory included) and every synapse word,
    v̂ and the dead and fired bits after each update. The default (lean) leaves out what training
    does not use, for a link 10 to 100 times slower than the core: the final state and vmax of a
    sample (its FixedResult has zeros there and ``state_read = False``), and the state after an
    update, which is read when first asked for (``weights_raw``, ``momentum_raw``, ...); the
    gradient words are read after every `gradient` (its result), which also refreshes w and m.
    """

    _M = _lazy("_M", "wm")
    _V = _lazy("_V", "extra")
    dead = _lazy("_dead", "extra")
    fired = _lazy("_fired", "extra")

    minibatches_per_run = 1
    #: Samples per `run` call of `evaluate_fixed` (the progress bar's step).
    samples_per_run = 100

    def __init__(self, cfg: CoreConfig, transport: Transport, weights_raw=None, *, timeout_s: float = 1.0,
                 busy_timeout_s: float = 10.0, exchanges: list | None = None, load: bool = True,
                 full_readback: bool = False):
        self.cfg = cfg
        self.full_readback = full_readback
        #: What an update changed and was not read yet: "wm" (w, m), "extra" (v̂, dead, fired).
        self._stale: set = set()
        self.transport = transport
        self.link = Link(transport, frame_of(cfg), timeout_s=timeout_s, exchanges=exchanges)
        self._bus = _FrameBus(self.link, busy_timeout_s)
        self._golden = FixedCore(cfg)  # validates weights, encodes inputs, host-side loss
        n = cfg.n_synapses
        self._G = np.zeros(n, dtype=np.int64)
        self._M = np.zeros(n, dtype=np.int64)
        self._V = np.zeros(n, dtype=np.int64)
        self.dead = np.zeros(cfg.n_hidden, dtype=bool)
        self.fired = np.zeros(cfg.n_hidden, dtype=bool)
        self.lfsr_state = int(cfg.lfsr_seed)
        #: The learning-rate registers (§6.4), written to the board before each update.
        self.lr_mant = np.array(cfg.lr_mant, dtype=np.int64)
        self.flags = Flag(0)
        self.last_update: dict = {}
        # Bytes left in the port's buffer (an answer to a command of an earlier, interrupted
        # process) would be taken for the answer to ID.
        transport.discard_input()
        self.check_id()
        if weights_raw is not None:
            self._golden.set_weights_raw(weights_raw)
        if load:  # load=False: leave the board as it is (`evcore board info`)
            self.load_state()

    # -- identification and state -----------------------------------------------------------

    def check_id(self) -> int:
        from ..hdl.core import config_id
        from ..hdl.protocol import Op

        want = config_id(self.cfg)
        got = self.link.transact(Op.ID)[1]
        if got != want:
            raise LinkError(f"{self.transport.name}: the board's identification word is 0x{got:08x}, "
                            f"but this CoreConfig hashes to 0x{want:08x} (the bitstream was built for "
                            "another config)")
        self.id_word = got
        return got

    def load_state(self):
        """Write the whole chip state of this object to the board: synapse words, v̂, dead and
        fired bits, LFSR, learning rates; clear the flags and the input buffer."""
        from ..hdl.core import Reg, Region, synapse_layout, vmax_layout

        cfg, bus = self.cfg, self._bus
        layout = synapse_layout(cfg)
        w = np.concatenate([m.ravel() for m in self.weights_raw]).astype(np.int64)
        fields = {"w": w, "g": self._G} | ({"m": self._M} if cfg.has_momentum else {})

        async def load():
            for a in range(cfg.n_synapses):
                word = layout.const({k: int(v[a]) for k, v in fields.items()}).as_bits()
                await bus.write(Region.SYNAPSE, a, word)
            if cfg.optimizer is Optimizer.ADAM:
                for a in range(cfg.n_synapses):
                    await bus.write(Region.ADAM_V, a, int(self._V[a]))
            if cfg.revive_hidden > 0:
                vl = vmax_layout(cfg)
                for h in range(cfg.n_hidden):
                    await bus.write(Region.VMAX, h, vl.const({"dead": int(self.dead[h]),
                                                             "fired": int(self.fired[h])}).as_bits())
            await bus.write(Region.REG, Reg.LFSR.value, self.lfsr_state)
            for mat, mant in enumerate(self.lr_mant):
                await bus.write(Region.REG, Reg.LR_MANT.value + mat, int(mant))
            await bus.write(Region.REG, Reg.FLAGS.value, (1 << len(Flag)) - 1)
            await bus.write(Region.REG, Reg.IN_COUNT.value, 0)

        _run(load())

    def _refresh(self, group: str):
        from ..hdl.core import Region, vmax_layout

        if group not in self._stale:
            return
        self._stale.discard(group)
        cfg = self.cfg
        if group == "wm":
            self.read_back()
            return
        if cfg.optimizer is Optimizer.ADAM:
            self._V = np.array(_run(self._bus.read_many([(Region.ADAM_V, a) for a in range(cfg.n_synapses)])),
                               dtype=np.int64)
        if cfg.revive_hidden > 0:
            vl = vmax_layout(cfg)
            words = [vl.from_bits(v) for v in _run(self._bus.read_many([(Region.VMAX, h)
                                                                         for h in range(cfg.n_hidden)]))]
            self.dead = np.array([w.dead for w in words], dtype=bool)
            self.fired = np.array([w.fired for w in words], dtype=bool)

    def read_back(self) -> dict:
        """Read every synapse word from the board into this object; returns them (w, g, m)."""
        from ..tb.core.host import read_synapses

        self._stale.discard("wm")
        words = _run(read_synapses(self._bus, self.cfg))
        self._golden.set_weights_raw(self._golden._views(words["w"]))
        self._G = words["g"]
        if "m" in words:
            self._M = words["m"]
        return words

    def info(self) -> BoardInfo:
        """The identification word and the counter registers of the last sample and update."""
        from ..hdl.core import Reg, Region
        from ..tb.core.host import REG_FIELDS, TRAIN_REG_FIELDS

        fields = list(REG_FIELDS + TRAIN_REG_FIELDS) + [("lfsr", Reg.LFSR), ("cyc_update", Reg.CYC_UPDATE)]
        values = _run(self._bus.read_many([(Region.REG, r.value) for _, r in fields]))
        counters = {k: int(v) for (k, _), v in zip(fields, values)}
        counters["flags"] = Flag(counters["flags"]).name or "none"
        return BoardInfo(self.id_word, counters)

    # -- FixedCore's interface --------------------------------------------------------------

    @property
    def weights_raw(self) -> list:
        self._refresh("wm")
        return self._golden.weights_raw

    def set_weights_raw(self, weights_raw):
        """Load new weights (the gradient and moment words keep their values, as in FixedCore)."""
        from ..hdl.core import Region, synapse_layout

        self._golden.set_weights_raw(weights_raw)
        cfg, layout = self.cfg, synapse_layout(self.cfg)
        w = np.concatenate([m.ravel() for m in self.weights_raw]).astype(np.int64)

        async def load():
            for a in range(cfg.n_synapses):
                f = {"w": int(w[a]), "g": int(self._G[a])}
                if cfg.has_momentum:
                    f["m"] = int(self._M[a])
                await self._bus.write(Region.SYNAPSE, a, layout.const(f).as_bits())

        _run(load())

    @classmethod
    def factory(cls, transport_factory, **kw):
        """A `make_core` for `golden.core.train_fixed`: ``factory(cfg, weights_raw)`` and
        ``factory.from_float(cfg, weights)`` open the transport and build a BoardCore."""
        return _BoardFactory(cls, transport_factory, kw)

    @property
    def grads_raw(self) -> list:
        return [v.copy() for v in self._golden._views(self._G)]

    @property
    def momentum_raw(self) -> list:
        return [v.copy() for v in self._golden._views(self._M)]

    @property
    def second_moment_raw(self) -> list:
        return [v.copy() for v in self._golden._views(self._V)]

    def encode_inputs(self, inputs):
        return self._golden.encode_inputs(inputs)

    def loss(self, result: FixedResult, labels, loss_fn=None) -> np.ndarray:
        return self._golden.loss(result, labels, loss_fn)

    def run(self, inputs) -> FixedResult:
        """Forward pass of a batch on the board, one sample after the other."""
        return self._samples(inputs, None)

    def gradient(self, inputs, labels, loss_fn=None):
        """`FixedCore.gradient` on the board: forward, loss unit and backward of each sample from
        cleared gradient words, which are then read back. Returns (losses, dL/dW, FixedResult)."""
        self._golden._check_loss(loss_fn)
        labels = np.asarray(labels)
        self._golden.check_labels(labels, len(self._golden.encode_inputs(inputs)[2]))
        if self._G.any():  # "from cleared accumulators": clear them on the board first
            self._G[:] = 0
            self.set_weights_raw(self.weights_raw)
        self._clear_silent()
        res = self._samples(inputs, labels)
        self.read_back()  # the gradient words (and w, m, unchanged)
        if not self.full_readback:
            self._stale.add("extra")  # the samples set fired bits
        res.grads_raw = self.grads_raw
        n_b = len(labels)
        scale = self.cfg.grad_scale() / max(n_b, 1)
        return self.loss(res, labels), [g * scale for g in res.grads_raw], res

    def _clear_silent(self):
        """Zero the loss-shaping counters SILENT + l of the shaped layers (§6.5): golden counts each
        minibatch from zero, the chip since its last update (a `gradient` without an update, or an
        earlier process's interrupted minibatch, would be counted too)."""
        from ..hdl.core import Reg, Region

        async def clear():
            for l, threshold in enumerate(self.cfg.silent_threshold):
                if threshold < 1.0:  # the other counters read 0 and ignore writes
                    await self._bus.write(Region.REG, Reg.SILENT.value + l, 0)

        _run(clear())

    @property
    def _silent(self) -> np.ndarray:
        """The loss-shaping counters SILENT + l (golden's ``FixedCore._silent``), read from the board."""
        from ..tb.core.host import read_silent

        return np.array(_run(read_silent(self._bus, self.cfg)), dtype=np.int64)

    def update(self) -> Flag:
        """The on-chip update (§6) with the learning rates `lr_mant`; reads back every synapse word,
        v̂, LFSR and the dead and fired bits. Returns the flags it raised."""
        from ..tb.core.host import run_update

        out = _run(run_update(self._bus, self.cfg, self.lr_mant, read_back=self.full_readback))
        self.last_update = out
        self.lfsr_state = out["lfsr"]
        flags = Flag(out["flags"])
        self.flags |= flags
        if not self.full_readback:
            self._G[:] = 0  # the update clears them; the rest is read when asked for
            self._stale |= {"wm", "extra"}
            return flags
        self._golden.set_weights_raw(self._golden._views(out["w"]))
        self._G = out["g"]
        if "m" in out:
            self._M = out["m"]
        if "v" in out:
            self._V = out["v"]
        if "dead" in out:
            self.dead, self.fired = out["dead"], out["fired"]
        return flags

    def update_cycles(self) -> int:
        """Cycles of the last update, as the board counted them."""
        return int(self.last_update.get("cyc_update", 0))

    # FixedCore's own, over this class's `gradient`, `update` and `flags`: one statement of both.
    train_step = FixedCore.train_step
    clear_flags = FixedCore.clear_flags

    def close(self):
        self.transport.close()

    # -- samples ----------------------------------------------------------------------------

    def _samples(self, inputs, labels) -> FixedResult:
        from ..tb.core.host import encode_uncut, run_sample

        cfg = self.cfg
        steps, ids, counts, _ = self._golden.encode_inputs(inputs)
        all_steps, all_ids, all_counts = encode_uncut(cfg, inputs)  # the board cuts at capacity
        rows = []
        for b in range(len(counts)):
            label = None if labels is None else int(labels[b])
            rows.append(_run(run_sample(self._bus, cfg, all_steps[b], all_ids[b], int(all_counts[b]), label,
                                        read_state=self.full_readback)))
        return self._result(rows, steps, ids, counts, train=labels is not None)

    def _result(self, rows, steps, ids, counts, train) -> FixedResult:
        cfg = self.cfg
        n_b, cap, n_neur = len(rows), cfg.record_capacity, sum(cfg.sizes[1:])

        def stack(key, width=None):
            if width is None:
                if not n_b:
                    return np.zeros((0,), dtype=np.int64)
                return np.array([r[key] for r in rows], dtype=np.int64).reshape(n_b, *np.shape(rows[0][key]))
            out = np.zeros((n_b, width), dtype=np.int64)
            for b, r in enumerate(rows):
                out[b, : len(r[key])] = r[key]
            return out

        if not self.full_readback:  # not read: zeros
            for r in rows:
                r["final_v"] = r["final_cur"] = np.zeros(n_neur, dtype=np.int64)
                if train:
                    r["final_lam_v"] = r["final_lam_i"] = r["final_v"]
        spiked = np.zeros((n_b, n_neur), dtype=np.int64)
        first_step = stack("first_step", cfg.sizes[-1])
        for b, r in enumerate(rows):
            if "spiked_hidden" in r:
                spiked[b, : cfg.n_hidden] = r["spiked_hidden"]
            else:
                spiked[b, r["rec_neuron"][: r["rec_count"]]] = 1
            spiked[b, n_neur - cfg.sizes[-1] :] = first_step[b] < cfg.n_steps
        res = FixedResult(
            cfg, steps, ids, counts,
            stack("rec_step", cap), stack("rec_neuron", cap), stack("rec_cur", cap), stack("rec_count"),
            first_step, stack("first_cur", cfg.sizes[-1]), stack("first_v", cfg.sizes[-1]),
            stack("final_v", n_neur), stack("final_cur", n_neur), stack("n_end"), spiked,
            stack("layer_counts", cfg.n_layers), stack("flags"), stack("cyc_total"),
        )  # fmt: skip
        res.state_read = self.full_readback
        if cfg.revive_hidden > 0 and self.full_readback:
            res.vmax, res.vmax_step = stack("vmax", cfg.n_hidden), stack("vmax_step", cfg.n_hidden)
            if train and n_b:
                self.fired = np.asarray(rows[-1]["fired_hidden"], dtype=bool)
        if train:
            res.prob, res.lterm = stack("prob", cfg.sizes[-1]), stack("lterm", cfg.sizes[-1])
            res.active, res.n_jumps, res.n_revived = stack("active"), stack("n_jumps"), stack("n_revived")
            res.cycles_loss, res.cycles_backward = stack("cyc_loss"), stack("cyc_backward")
            last = n_b - 1
            ran = n_b and (res.active[last] > 0 or res.n_revived[last] > 0)
            zero = np.zeros(n_neur, dtype=np.int64)
            res.final_lam_v = np.asarray(rows[last]["final_lam_v"]) if ran else zero
            res.final_lam_i = np.asarray(rows[last]["final_lam_i"]) if ran else zero.copy()
        res.cycles_sweep, res.cycles_fanout, res.n_inputs = stack("cyc_sweep"), stack("cyc_fanout"), \
            stack("n_inputs")
        res.layers = self._golden._spike_batches(res)
        self.flags |= Flag(int(np.bitwise_or.reduce(res.flags, initial=0)))
        return res


class _BoardFactory:
    def __init__(self, cls, transport_factory, kw):
        self.cls, self.transport_factory, self.kw = cls, transport_factory, kw
        self.minibatches_per_run = cls.minibatches_per_run

    def __call__(self, cfg, weights_raw=None):
        return self.cls(cfg, self.transport_factory(), weights_raw, **self.kw)

    def from_float(self, cfg, net_or_weights):
        return self(cfg, FixedCore.from_float(cfg, net_or_weights).weights_raw)


def parse_backend(text: str) -> str:
    """`--backend` values: golden, rtl, serial:PORT (argparse type; one-line error otherwise)."""
    import argparse

    if text in ("golden", "rtl") or (text.startswith("serial:") and len(text) > len("serial:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: choose golden, rtl or serial:PORT "
                                     "(e.g. serial:/dev/ttyUSB1)")


# --- the chip's state, for checkpoints ------------------------------------------------------------


def core_state(core) -> dict:
    """Everything a core holds between minibatches (FixedCore, RtlCore or BoardCore) as arrays:
    weights, gradient and moment words, v̂, the §5.6 dead and fired bits, LFSR, flags, learning rates."""
    flat = np.concatenate([np.asarray(w).ravel() for w in core.weights_raw]).astype(np.int64)
    return {"w": flat, "g": np.array(core._G, dtype=np.int64), "m": np.array(core._M, dtype=np.int64),
            "v": np.array(core._V, dtype=np.int64), "dead": np.array(core.dead, dtype=bool),
            "fired": np.array(core.fired, dtype=bool), "lfsr": np.int64(core.lfsr_state),
            "flags": np.int64(int(core.flags)), "lr_mant": np.array(core.lr_mant, dtype=np.int64)}


def restore_core_state(core, state: dict) -> None:
    """Put a `core_state` back into a core; a BoardCore writes it onto the board (`load_state`)."""
    if isinstance(core, BoardCore):
        core._stale.clear()  # all of it is written below
    for name in ("_G", "_M", "_V"):
        getattr(core, name)[...] = state[name[1:].lower()]
    core.dead = np.array(state["dead"], dtype=bool)
    core.fired = np.array(state["fired"], dtype=bool)
    core.lfsr_state = int(state["lfsr"])
    core.flags = Flag(int(state["flags"]))
    core.lr_mant = np.array(state["lr_mant"], dtype=np.int64)
    views = FixedCore(core.cfg)._views(np.array(state["w"], dtype=np.int64))
    if isinstance(core, BoardCore):
        core._golden.set_weights_raw(views)
        core.load_state()
    else:
        core.set_weights_raw(views)


def board_factory(backend: str):
    """`make_core` of ``--backend serial:PORT[@BAUD]``: each core opens the port (default 1 Mbaud)."""
    spec = backend.split(":", 1)[1]
    port, _, baud = spec.rpartition("@") if "@" in spec else (spec, "", "")
    try:
        baud = int(baud) if baud else DEFAULT_BAUD
    except ValueError:
        raise LinkError(f"--backend {backend}: {baud!r} is not a baud rate (serial:PORT@BAUD)") from None
    return BoardCore.factory(lambda: SerialTransport(port, baud))


# --- `evcore board` ------------------------------------------------------------------------------


def add_board_arguments(p):
    sub = p.add_subparsers(dest="board_command", required=True)
    q = sub.add_parser("info", help="the identification word and the counters of a board")
    q.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1 (or a simulated "
                   "board's pty)")
    q.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"line rate (default {DEFAULT_BAUD})")
    _config_arguments(q)
    q.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS", help="answer timeout (default 1)")
    q = sub.add_parser("sim", help="a simulated board: the UART top under Verilator behind a pty "
                       "(dev install)")
    _config_arguments(q)
    q.add_argument("--divisor", type=int, default=8, help="UART cycles per bit (default 8)")


def _config_arguments(q):
    q.add_argument("--core", choices=["up5k", "ecp5-85f"],
                   help="the board's CoreConfig preset (info: default, try every preset)")
    q.add_argument("--config", metavar="FILE", help="a CoreConfig as JSON (CoreConfig.to_json) or a "
                   "fixed-point checkpoint whose config the board was built for")


def _configs(args) -> dict:
    from ..golden.config import CoreConfig

    if args.config:
        path = Path(args.config)
        if path.is_dir() or path.suffix == ".npz":
            from .train import load_fixed_checkpoint

            return {str(path): load_fixed_checkpoint(path)[0].cfg}
        if not path.is_file():
            raise FileNotFoundError(f"--config {path} does not exist")
        return {str(path): CoreConfig.from_json(path.read_text())}
    presets = {"up5k": CoreConfig.up5k, "ecp5-85f": CoreConfig.ecp5_85f}
    names = [args.core] if args.core else list(presets)
    return {f"CoreConfig preset {n}": presets[n]() for n in names}


def board_cli(args) -> int:
    if args.board_command == "sim":
        return _board_sim(args)
    from ..hdl.core import config_id
    from ..hdl.protocol import Op

    configs = _configs(args)
    transport = SerialTransport(args.port, args.baud)
    try:
        word = Link(transport, None, timeout_s=args.timeout).transact(Op.ID)[1]
        print(f"board on {args.port} at {args.baud} baud: identification word 0x{word:08x}")
        match = [(name, cfg) for name, cfg in configs.items() if config_id(cfg) == word]
        if not match:
            tried = ", ".join(f"{n} 0x{config_id(c):08x}" for n, c in configs.items())
            print(f"no known config has this hash (tried {tried}); give the board's --config to read its "
                  "counters")
            return 1
        name, cfg = match[0]
        print(f"= {name}: sizes {'-'.join(map(str, cfg.sizes))}, {cfg.optimizer.value}, "
              f"{cfg.n_synapses} synapses")
        core = BoardCore(cfg, transport, timeout_s=args.timeout, load=False)
        counters = core.info().counters
        print("counters (last sample and update): " + ", ".join(f"{k} {v}" for k, v in counters.items()))
    finally:
        transport.close()
    return 0


def _board_sim(args) -> int:
    from ..hdl.core import config_id

    try:
        from ..tb.link.sim_board import SimulatedBoard
    except ImportError as err:
        raise LinkError(f"evcore board sim needs the dev install (cocotb, Verilator): {err}") from None
    if args.core is None and args.config is None:
        args.core = "up5k"
    (name, cfg), = _configs(args).items()
    print(f"evcore: building the UART top for {name} (hash 0x{config_id(cfg):08x}) ...", flush=True)
    with SimulatedBoard(cfg, divisor=args.divisor, max_wall_s=7 * 24 * 3600) as board:
        print(f"simulated board on {board.port} ({args.divisor} cycles per bit); Ctrl-C stops it, e.g. "
              f"`evcore board info --port {board.port}`", flush=True)
        import signal

        def stop(signum, frame):
            raise KeyboardInterrupt

        # As a background job SIGINT may be ignored: SIGTERM stops the simulator cleanly too.
        signal.signal(signal.SIGTERM, stop)
        try:
            while board.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print("evcore: simulated board stopped")
    return 0
