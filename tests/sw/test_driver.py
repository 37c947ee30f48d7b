# amaranth: UnusedElaboratable=no
"""The host driver (sw/driver.py, docs/driver.md): `BoardCore` over the framed protocol.

End to end (sim): the UART top under Verilator behind a pseudo-terminal (tb/link/sim_board.py);
`SerialTransport` opens the pty like a USB-UART, and inference, training minibatches, the
update (its loss-shaping bump, §6.5) and a state restore on the board equal `FixedCore` bit for
bit. The session's byte traffic is committed (tests/sw/data/board_session*.txt) and replayed here
without a simulator: the driver must send exactly the recorded bytes and decode the recorded
answers into golden's results. Re-record after a change of the host sequence (docs/driver.md):
EVCORE_WRITE_SESSION=1 pytest tests/sw/test_driver.py -m sim -k pty.
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

from evcore.golden.config import CoreConfig, Flag
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

#: The recorded sessions: full read-back (every value, as RtlCore) and lean (the default).
SESSIONS = {"full": Path(__file__).parent / "data" / "board_session.txt",
            "lean": Path(__file__).parent / "data" / "board_session_lean.txt"}
SESSION = SESSIONS["full"]
SMALL = dict(sizes=(3, 4, 2), n_steps=16, dt_s=1e-3, record_capacity=8, input_capacity=5,
             lr_mant=(1, 1), lr_shift=(1, 1), silent_threshold=(1.0, 1.0))
#: The driver's test config: SMALL with the revival of dead hidden neurons, so that the vmax memory
#: and the dead and fired bits (§5.6) travel over the link too, and loss shaping of the hidden layer
#: (§6.5) in minibatches of 2: silent_count_max = floor(0.25 · 2 · 4) = 2, so that the first update
#: (4 silent hidden pairs) bumps the hidden layer's weights and the second (2) does not.
DRIVER = dict(SMALL, revive_hidden=1.0, batch_size=2, silent_threshold=(0.25, 1.0), silent_bump=0.05)
#: FixedResult fields the board exposes (as sw/cli.py RTL_FIELDS, plus the training ones).
FIELDS = ("rec_count", "rec_step", "rec_neuron", "rec_cur", "first_step", "first_cur", "first_v",
          "final_v", "final_cur", "n_end", "flags", "layer_counts", "cycles_forward", "spiked")
TRAIN_FIELDS = ("prob", "lterm", "active", "n_jumps", "n_revived", "cycles_loss", "cycles_backward",
                "final_lam_v", "final_lam_i")


def small_problem():
    cfg = CoreConfig(**DRIVER)
    rng = np.random.default_rng(0)  # every output spikes in each sample, no record overflow
    hi = (1 << (cfg.w_bits - 1)) - 1
    weights = [rng.integers(-hi // 4, hi + 1, size=(b, a)) for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    inputs = (rng.uniform(0, cfg.t_max_s / 2, size=(3, 7)), rng.integers(0, 3, size=(3, 7)),
              np.array([7, 4, 6]))
    return cfg, weights, inputs


def session(core):
    """The recorded session after the identification and the state load of BoardCore(...): three
    inference samples, one training minibatch (2 samples, each labelled with its later output)
    with its update at a raised learning rate, a second minibatch (1 sample: hidden neurons the
    first left dead are revived), then inference again. Returns what a test compares."""
    cfg, _, x = small_problem()
    out = {"run0": core.run(x)}
    labels = np.array([int(np.argmax(out["run0"].first_step[b])) for b in (1, 2)])
    core.lr_mant = np.array([40000, 40000])
    losses, grads, res = core.gradient((x[0][1:], x[1][1:], x[2][1:]), labels)
    # Copies: FixedCore's are views of its memories, which the update rewrites.
    out |= {"losses": losses, "train": res, "grads_raw": [g.copy() for g in core.grads_raw]}
    out["silent"] = core._silent.copy()  # the §6.5 counters the update decides its bump from
    out["update_flags"] = core.update()
    out["losses2"], out["train2"] = core.train_step((x[0][:1], x[1][:1], x[2][:1]), labels[:1])
    out |= {"weights": core.weights_raw, "m": core.momentum_raw, "v": core.second_moment_raw,
            "lfsr": core.lfsr_state, "run1": core.run((x[0][:1], x[1][:1], x[2][:1]))}
    out["flags"] = core.flags  # sticky over the session
    core.clear_flags()
    out["cleared"] = core.flags
    return out


def check_against_golden(out, full=True):
    """`out` (a session on the board) equals golden's; `full`: the final state was read too."""
    cfg, weights, _ = small_problem()
    gold = session(FixedCore(cfg, weights))
    state = ("final_v", "final_cur", "final_lam_v", "final_lam_i")
    for run in ("run0", "run1"):
        for f in FIELDS:
            if full or f not in state:
                assert np.array_equal(getattr(out[run], f), getattr(gold[run], f)), f"{run}: {f}"
        assert out[run].state_read == full
    for run in ("run0", "run1", "train", "train2"):
        for f in ("vmax", "vmax_step"):  # read with the state (full read-back only)
            assert np.array_equal(getattr(out[run], f), getattr(gold[run], f)) if full else \
                getattr(out[run], f) is None, f"{run}: {f}"
    for train in ("train", "train2"):
        for f in FIELDS[:-3] + TRAIN_FIELDS:  # final V, I: the state memory holds Λ after the backward pass
            if f not in ("final_v", "final_cur") and (full or f not in state):
                assert np.array_equal(getattr(out[train], f), getattr(gold[train], f)), f"{train}: {f}"
    assert gold["train2"].n_revived.sum() > 0, "the second minibatch must revive a dead neuron"
    np.testing.assert_array_equal(out["losses2"], gold["losses2"])
    assert gold["train"].active.all(), "both training samples must run their backward pass"
    for key in ("grads_raw", "weights", "m", "v"):
        assert all(np.array_equal(a, b) for a, b in zip(out[key], gold[key])), key
    assert np.abs(np.concatenate([g.ravel() for g in gold["grads_raw"]])).sum() > 0
    assert any((a != b).any() for a, b in zip(gold["weights"], weights)), "the update must move a weight"
    assert out["lfsr"] == gold["lfsr"] and out["update_flags"] == gold["update_flags"]
    assert out["flags"] == gold["flags"] and out["cleared"] == gold["cleared"] == Flag(0), "flags"
    shaped = [l for l, t in enumerate(cfg.silent_threshold) if t < 1.0]  # the others read 0 on a chip
    assert gold["silent"][0] > cfg.silent_count_max[0], "the first update must bump the hidden layer (§6.5)"
    assert out["silent"][shaped].tolist() == gold["silent"][shaped].tolist(), "silent counters (§6.5)"
    np.testing.assert_array_equal(out["losses"], gold["losses"])


def without_polls(exchanges):
    """The exchanges but STATUS polls (their number depends on the host's timing)."""
    return [(tx, rx) for tx, rx in exchanges if tx[1] != Op.STATUS.value]


@pytest.mark.sim
def test_board_over_a_pty_equals_golden():
    from evcore.tb.link.sim_board import SimulatedBoard

    cfg, weights, x = small_problem()
    recorded = {}
    with SimulatedBoard(cfg) as board:
        for mode in ("lean", "full"):
            exchanges = []
            core = BoardCore(cfg, SerialTransport(board.port), weights, timeout_s=30, exchanges=exchanges,
                             full_readback=mode == "full")
            out = session(core)
            check_against_golden(out, full=mode == "full")
            recorded[mode] = list(exchanges)  # the session; core_state's reads below are not in it
            assert core.link.stats["resends"] == 0
            if mode == "lean":
                # What the update changed, read when asked for: the whole state equals golden's.
                state = core_state(core)
                gold = FixedCore(cfg, weights)
                session(gold)
                want = core_state(gold)
                # Without revival (revive_hidden = 0) the chip has no dead and fired bits (§5.6).
                for k in set(want) - ({"dead", "fired"} if cfg.revive_hidden == 0 else set()):
                    assert np.array_equal(state[k], want[k]), k
            core.close()
        # A second host object (the host restarted): the state goes back onto the board and the
        # next sample equals golden's.
        again = BoardCore(cfg, SerialTransport(board.port), timeout_s=30)
        restore(again, state)
        gold = FixedCore(cfg, out["weights"])
        assert np.array_equal(again.run(x).first_step, gold.run(x).first_step)
        # §6.5: each minibatch counts its silent pairs from zero, as golden's `gradient` (the chip counts
        # since its last update): two gradients without an update.
        labels = np.argmax(gold.run(x).first_step, axis=1)
        for c in (again, gold):
            c.gradient(x, labels)
            c.gradient((x[0][:1], x[1][:1], x[2][:1]), labels[:1])
        shaped = [l for l, t in enumerate(cfg.silent_threshold) if t < 1.0]
        assert again._silent[shaped].tolist() == gold._silent[shaped].tolist()
        # A board built for another config: one line naming both hashes.
        other = cfg.replace(lr_mant=(2, 2))
        with pytest.raises(LinkError, match=f"0x{config_id(cfg):08x}.*0x{config_id(other):08x}"):
            BoardCore(other, SerialTransport(board.port), timeout_s=30)
    for mode, path in SESSIONS.items():
        if os.environ.get("EVCORE_WRITE_SESSION") or not path.exists():
            write_session(path, recorded[mode], f"tests/sw/test_driver.py session() ({mode} read-back) on "
                          f"the UART top under Verilator; config hash 0x{config_id(cfg):08x}; rewrite with "
                          "EVCORE_WRITE_SESSION=1")
        # The committed recording is this RTL's traffic (STATUS polls aside, which depend on timing).
        assert without_polls(read_session(path)) == without_polls(recorded[mode]), mode


def core_state(core):
    from evcore.sw.driver import core_state as state

    return state(core)


def restore(core, state):
    from evcore.sw.driver import restore_core_state

    restore_core_state(core, state)


@pytest.mark.parametrize("mode", ["full", "lean"])
def test_replayed_session_equals_golden(mode):
    cfg, weights, _ = small_problem()
    replay = ReplayTransport(read_session(SESSIONS[mode]))
    out = session(BoardCore(cfg, replay, weights, full_readback=mode == "full"))
    assert replay.finished
    check_against_golden(out, full=mode == "full")


def test_replay_catches_a_different_command():
    cfg, weights, _ = small_problem()
    weights[0][0, 0] += 1  # another weight: another WRITE frame
    with pytest.raises(LinkError, match="exchange 1: the driver sent"):
        BoardCore(cfg, ReplayTransport(read_session(SESSION)), weights)


class ScriptedBoard:
    """A board on a real pty that answers from a recorded session; `answer(n, rx)` may change the
    n-th answer (None: stay silent; b"": close the line, the port vanishes).

    With `check`, each command frame must be the recorded one (an empty one: any): else the board
    falls silent and `mismatch` names the exchange (`close` raises it). Without the check, an
    out-of-step script answers a command with another command's word, and the driver fails far
    downstream (a FIRST read answered with a wider word: "Target of a constant does not fit in
    32 bit(s)")."""

    def __init__(self, exchanges, answer=lambda n, rx: rx, check=True):
        self.master, slave = pty.openpty()
        import tty

        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.exchanges, self.answer, self.served = exchanges, answer, 0
        self.check, self.mismatch = check, None
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
            for frame in dec.frames:
                if self.mismatch is not None:
                    break
                want = self.exchanges[self.served][0] if self.served < len(self.exchanges) else None
                if self.check and (want is None or want and [frame] != decode_frames(want).frames):
                    has = " ".join(f.hex(" ") for f in decode_frames(want).frames) if want else "nothing more"
                    self.mismatch = (f"exchange {self.served}: the driver sent {frame.hex(' ')}, "
                                     f"the script has {has}")
                    break
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
        assert self.mismatch is None, f"scripted board: {self.mismatch}"


def test_serial_transport_against_a_scripted_board():
    cfg, weights, _ = small_problem()
    board = ScriptedBoard(read_session(SESSION))
    try:
        out = session(BoardCore(cfg, SerialTransport(board.port), weights, full_readback=True))
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
    # Unchecked: the ID resends of "timeout" and "garbage" are not in the script.
    board = ScriptedBoard(read_session(SESSION), answer, check=False)
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


@pytest.mark.parametrize("then_answer", [False, True])
def test_a_link_error_frame_is_resent_unless_the_answer_follows(then_answer):
    """BAD_CRC alone means the frame never reached the core: the driver rests and resends it. An
    error frame followed by the answer was about other bytes (noise before the frame): no resend,
    so a command that must not run twice does not."""
    cfg, weights, _ = small_problem()
    exchanges = read_session(SESSION)
    bad = encode_frame(bytes([LinkStatus.BAD_CRC.value, 0]))
    if then_answer:  # the 3rd answer comes after an error frame
        script = exchanges[:2] + [(exchanges[2][0], bad + exchanges[2][1])] + exchanges[3:]
    else:  # the 3rd answer is a link error, then the recording goes on with that command
        script = exchanges[:2] + [(exchanges[2][0], bad)] + exchanges[2:]
    board = ScriptedBoard(script)
    try:
        core = BoardCore(cfg, SerialTransport(board.port), weights, full_readback=True)
        check_against_golden(session(core))
        assert core.link.stats["resends"] == (0 if then_answer else 1)
    finally:
        board.close()


def test_a_missing_port_is_one_line():
    with pytest.raises(LinkError, match="cannot open serial port /dev/evcore-nonexistent"):
        SerialTransport("/dev/evcore-nonexistent")
