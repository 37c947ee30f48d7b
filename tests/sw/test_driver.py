# amaranth: UnusedElaboratable=no
"""The host driver (sw/driver.py, docs/driver.md): `BoardCore` over the framed protocol.

End to end (sim): the UART top under Verilator behind a pseudo-terminal (tb/link/sim_board.py);
`SerialTransport` opens the pty like a USB-UART, and inference, training minibatches, the
update and a state restore on the board equal `FixedCore` bit for bit. The session's byte traffic
is committed (tests/sw/data/board_session.txt) and replayed here without a simulator: the driver
must send exactly the recorded bytes and decode the recorded answers into golden's results.
Error paths (timeout, garbage, a link error frame, a wrong configuration hash, a port that
vanishes mid-run) run against a scripted board on a real pty.
"""

import os
import pty
import select
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore
from evcore.hdl.core import config_id
from evcore.hdl.link import LinkStatus, encode_frame
from evcore.hdl.protocol import Op
from evcore.sw.driver import (
    BoardCore,
    LinkError,
    ReplayTransport,
    SerialTransport,
    read_session,
    write_session,
)

SESSION = Path(__file__).parent / "data" / "board_session.txt"
SMALL = dict(sizes=(3, 4, 2), n_steps=16, dt_s=1e-3, record_capacity=8, input_capacity=5,
             lr_mant=(1, 1), lr_shift=(1, 1), silent_threshold=(1.0, 1.0))
#: FixedResult fields the board exposes (as sw/cli.py RTL_FIELDS, plus the training ones).
FIELDS = ("rec_count", "rec_step", "rec_neuron", "rec_cur", "first_step", "first_cur", "first_v",
          "final_v", "final_cur", "n_end", "flags", "layer_counts", "cycles_forward", "spiked")
TRAIN_FIELDS = ("prob", "lterm", "active", "n_jumps", "n_revived", "cycles_loss", "cycles_backward",
                "final_lam_v", "final_lam_i")


def small_problem():
    cfg = CoreConfig(**SMALL)
    rng = np.random.default_rng(0)  # every output spikes in each sample, no record overflow
    hi = (1 << (cfg.w_bits - 1)) - 1
    weights = [rng.integers(-hi // 4, hi + 1, size=(b, a)) for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    inputs = (rng.uniform(0, cfg.t_max_s / 2, size=(3, 7)), rng.integers(0, 3, size=(3, 7)),
              np.array([7, 4, 6]))
    return cfg, weights, inputs


def session(core):
    """The recorded session after the identification and the state load of BoardCore(...): three
    inference samples, one training minibatch (2 samples, each labelled with its later output)
    with its update at a raised learning rate, then inference again. Returns what a test compares."""
    cfg, _, x = small_problem()
    out = {"run0": core.run(x)}
    labels = np.array([int(np.argmax(out["run0"].first_step[b])) for b in (1, 2)])
    core.lr_mant = np.array([40000, 40000])
    losses, grads, res = core.gradient((x[0][1:], x[1][1:], x[2][1:]), labels)
    # Copies: FixedCore's are views of its memories, which the update rewrites.
    out |= {"losses": losses, "train": res, "grads_raw": [g.copy() for g in core.grads_raw]}
    out["update_flags"] = core.update()
    out |= {"weights": core.weights_raw, "m": core.momentum_raw, "v": core.second_moment_raw,
            "lfsr": core.lfsr_state, "run1": core.run((x[0][:1], x[1][:1], x[2][:1]))}
    return out


def check_against_golden(out):
    cfg, weights, _ = small_problem()
    gold = session(FixedCore(cfg, weights))
    for run in ("run0", "run1"):
        for f in FIELDS:
            assert np.array_equal(getattr(out[run], f), getattr(gold[run], f)), f"{run}: {f}"
    for f in FIELDS[:-3] + TRAIN_FIELDS:  # final V, I: the state memory holds Λ after the backward pass
        if f not in ("final_v", "final_cur"):
            assert np.array_equal(getattr(out["train"], f), getattr(gold["train"], f)), f"train: {f}"
    assert gold["train"].active.all(), "both training samples must run their backward pass"
    for key in ("grads_raw", "weights", "m", "v"):
        assert all(np.array_equal(a, b) for a, b in zip(out[key], gold[key])), key
    assert np.abs(np.concatenate([g.ravel() for g in gold["grads_raw"]])).sum() > 0
    assert any((a != b).any() for a, b in zip(gold["weights"], weights)), "the update must move a weight"
    assert out["lfsr"] == gold["lfsr"] and out["update_flags"] == gold["update_flags"]
    np.testing.assert_array_equal(out["losses"], gold["losses"])


def without_polls(exchanges):
    """The exchanges but STATUS polls (their number depends on the host's timing)."""
    return [(tx, rx) for tx, rx in exchanges if tx[1] != Op.STATUS.value]


@pytest.mark.sim
def test_board_over_a_pty_equals_golden():
    from evcore.tb.link.sim_board import SimulatedBoard

    cfg, weights, x = small_problem()
    exchanges = []
    with SimulatedBoard(cfg) as board:
        core = BoardCore(cfg, SerialTransport(board.port), weights, timeout_s=30, exchanges=exchanges)
        out = session(core)
        check_against_golden(out)
        stats = dict(core.link.stats)
        # A second host object (the host restarted): the state goes back onto the board and the
        # next sample equals golden's.
        state = core_state(core)
        core.close()
        again = BoardCore(cfg, SerialTransport(board.port), timeout_s=30)
        restore(again, state)
        gold = FixedCore(cfg, out["weights"])
        assert np.array_equal(again.run(x).first_step, gold.run(x).first_step)
        # A board built for another config: one line naming both hashes.
        other = cfg.replace(lr_mant=(2, 2))
        with pytest.raises(LinkError, match=f"0x{config_id(cfg):08x}.*0x{config_id(other):08x}"):
            BoardCore(other, SerialTransport(board.port), timeout_s=30)
    if os.environ.get("EVCORE_WRITE_SESSION") or not SESSION.exists():
        write_session(SESSION, exchanges, "tests/sw/test_driver.py session() on the UART top under "
                      f"Verilator; config hash 0x{config_id(cfg):08x}; rewrite with EVCORE_WRITE_SESSION=1")
    # The committed recording is this RTL's traffic (STATUS polls aside, which depend on timing).
    assert without_polls(read_session(SESSION)) == without_polls(exchanges)
    assert stats["resends"] == 0


def core_state(core):
    from evcore.sw.driver import core_state as state

    return state(core)


def restore(core, state):
    from evcore.sw.driver import restore_core_state

    restore_core_state(core, state)


def test_replayed_session_equals_golden():
    cfg, weights, _ = small_problem()
    replay = ReplayTransport(read_session(SESSION))
    out = session(BoardCore(cfg, replay, weights))
    assert replay.finished
    check_against_golden(out)


def test_replay_catches_a_different_command():
    cfg, weights, _ = small_problem()
    weights[0][0, 0] += 1  # another weight: another WRITE frame
    with pytest.raises(LinkError, match="exchange 1: the driver sent"):
        BoardCore(cfg, ReplayTransport(read_session(SESSION)), weights)


class ScriptedBoard:
    """A board on a real pty that answers from a recorded session; `answer(n, rx)` may change the
    n-th answer (None: stay silent; b"": close the line, the port vanishes)."""

    def __init__(self, exchanges, answer=lambda n, rx: rx):
        self.master, slave = pty.openpty()
        import tty

        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.exchanges, self.answer, self.served = exchanges, answer, 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        from evcore.hdl.link import decode_frames

        buf = b""
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            dec = decode_frames(buf)
            for _ in dec.frames:
                rx = self.answer(self.served, self.exchanges[self.served][1])
                self.served += 1
                if rx == b"":
                    os.close(self.master)
                    os.close(self._slave)
                    return
                if rx is not None:
                    os.write(self.master, rx)
            buf = buf[dec.consumed :]

    def close(self):
        self._stop = True
        self._thread.join()


def test_serial_transport_against_a_scripted_board():
    cfg, weights, _ = small_problem()
    board = ScriptedBoard(read_session(SESSION))
    try:
        out = session(BoardCore(cfg, SerialTransport(board.port), weights))
        check_against_golden(out)
    finally:
        board.close()


def id_answer(word: int) -> bytes:
    return encode_frame(bytes([0, 4]) + word.to_bytes(4, "little"))


@pytest.mark.parametrize("case", ["timeout", "garbage", "wrong-hash", "vanished"])
def test_link_failures_are_one_line(case):
    cfg, weights, _ = small_problem()
    answer = {
        "timeout": lambda n, rx: None,
        "garbage": lambda n, rx: b"\x13\x37" * 5,
        "wrong-hash": lambda n, rx: id_answer(0xDEADBEEF) if n == 0 else rx,
        "vanished": lambda n, rx: b"" if n == 5 else rx,
    }[case]
    board = ScriptedBoard(read_session(SESSION), answer)
    want = {
        "timeout": r"no answer to ID within 0.3 s \(is the board connected",
        "garbage": r"no answer to ID within 0.3 s \(10 bytes of garbage: 13 37",
        "wrong-hash": f"word is 0xdeadbeef, but this CoreConfig hashes to 0x{config_id(cfg):08x}",
        "vanished": "the serial port disappeared",
    }[case]
    t0 = time.monotonic()
    try:
        with pytest.raises(LinkError, match=want) as err:
            BoardCore(cfg, SerialTransport(board.port), weights, timeout_s=0.3)
    finally:
        board.close()
    assert "\n" not in str(err.value)
    if case == "timeout":  # the ID is resent twice (it may run again), each waits the timeout
        assert 0.9 <= time.monotonic() - t0 < 3


def test_a_link_error_frame_is_resent():
    """BAD_CRC means the frame never reached the core: the driver rests and resends it."""
    cfg, weights, _ = small_problem()
    exchanges = read_session(SESSION)
    bad = encode_frame(bytes([LinkStatus.BAD_CRC.value, 0]))
    # The answer to the 3rd command is a link error, then the recording goes on with that command.
    script = exchanges[:2] + [(exchanges[2][0], bad)] + exchanges[2:]
    board = ScriptedBoard(script)
    try:
        core = BoardCore(cfg, SerialTransport(board.port), weights)
        check_against_golden(session(core))
        assert core.link.stats["resends"] == 1
    finally:
        board.close()


def test_a_missing_port_is_one_line():
    with pytest.raises(LinkError, match="cannot open serial port /dev/evcore-nonexistent"):
        SerialTransport("/dev/evcore-nonexistent")
