# amaranth: UnusedElaboratable=no
"""`evcore train ... --backend serial:PORT`, `--resume`, `evcore eval --backend serial:PORT` and
`evcore board info` (sw/driver.py, sw/fixed_train.py EpochState; docs/driver.md).

Resume: a run interrupted in its second epoch (KeyboardInterrupt inside the core, as Ctrl-C or a
lost board would stop it) and continued with ``--resume`` writes the same metrics.json (wall times
aside) and checkpoint as the uninterrupted run. Board CLI: against a scripted board on a pty, and
every failure as one line.
"""

import json

import numpy as np
import pytest

from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore
from evcore.hdl.core import Reg, config_id
from evcore.hdl.link import encode_frame
from evcore.sw import cli
from evcore.sw.driver import LinkError, frame_of
from evcore.tb.core.host import REG_FIELDS, TRAIN_REG_FIELDS

from .test_driver import SMALL, ScriptedBoard, id_answer

SHORT = ["train", "yinyang", "--model", "fixed", "--epochs", "2", "--train-samples", "48",
         "--batch-size", "16", "--eval-samples", "16", "--fresh-samples", "0", "--quiet"]
WALL_TIME_KEYS = {"wall_s", "wall_time_s", "train_epoch_s"}


def without_wall_times(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in WALL_TIME_KEYS}
    out["epochs"] = [{k: v for k, v in e.items() if k not in WALL_TIME_KEYS} for e in metrics["epochs"]]
    return out


@pytest.mark.parametrize("stop", ["ctrl-c", "lost board"])
def test_an_interrupted_fixed_run_resumes_to_the_uninterrupted_result(stop, tmp_path, monkeypatch, capsys):
    assert cli.main([*SHORT, "--out", str(tmp_path / "whole")]) == 0
    calls = {"n": 0}
    update = FixedCore.update

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 5:  # the 2nd minibatch of epoch 2 (3 per epoch)
            raise KeyboardInterrupt if stop == "ctrl-c" else LinkError("/dev/x: the serial port disappeared")
        return update(self)

    monkeypatch.setattr(FixedCore, "update", interrupted)
    part = tmp_path / "part"
    capsys.readouterr()
    assert cli.main([*SHORT, "--out", str(part)]) == (130 if stop == "ctrl-c" else 2)
    if stop == "lost board":
        err = capsys.readouterr().err
        assert err == "evcore: error: /dev/x: the serial port disappeared; continue the run with --resume\n"
    assert not (part / "metrics.json").exists() and (part / "train_state.npz").is_file()
    monkeypatch.setattr(FixedCore, "update", update)
    assert cli.main([*SHORT, "--out", str(part), "--resume"]) == 0
    assert "resuming yinyang" in capsys.readouterr().out
    whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "part"))
    assert without_wall_times(resumed) == without_wall_times(whole)
    assert resumed["wall_time_s"] >= resumed["epochs"][0]["wall_s"]  # the first epoch's time carried over
    with np.load(tmp_path / "whole" / "checkpoint.npz") as a, np.load(part / "checkpoint.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("weights_raw"))


@pytest.mark.parametrize("argv, message", [
    ([*SHORT, "--resume"], "--resume: {out}/train_state.npz does not exist"),
    ([*SHORT, "--backend", "serial:/dev/evcore-none"], "cannot open serial port /dev/evcore-none"),
    ([*SHORT, "--backend", "serial:/dev/x@fast"], "--backend serial:/dev/x@fast: 'fast' is not a baud rate"),
    (["board", "info", "--port", "/dev/evcore-nonexistent"], "cannot open serial port"),
    (["train", "yinyang", "--resume"], "--resume applies to --model fixed only"),
])
def test_board_and_resume_mistakes_are_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*argv, "--out", str(out)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"evcore: error: {message.format(out=out)}") and err.count("\n") == 1


def test_resume_refuses_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    one_epoch = [a if a != "2" else "1" for a in SHORT]
    assert cli.main([*one_epoch, "--out", str(out)]) == 0
    assert cli.main([*SHORT, "--out", str(out), "--seed", "1", "--resume"]) == 2
    assert "belongs to another run" in capsys.readouterr().err


def read_answer(frame, value: int) -> bytes:
    return encode_frame(bytes([0, frame.data_bytes]) + value.to_bytes(frame.data_bytes, "little"))


def test_board_info_prints_the_word_and_the_counters(tmp_path, capsys):
    cfg = CoreConfig(**SMALL)
    (tmp_path / "small.json").write_text(cfg.to_json())
    fields = list(REG_FIELDS + TRAIN_REG_FIELDS) + [("lfsr", Reg.LFSR), ("cyc_update", Reg.CYC_UPDATE)]
    fr = frame_of(cfg)
    # The CLI's ID (which config?), BoardCore's (the check), then the counter registers.
    answers = [id_answer(config_id(cfg))] * 2 + [read_answer(fr, 100 + k) for k in range(len(fields))]
    board = ScriptedBoard([(b"", a) for a in answers])
    try:
        argv = ["board", "info", "--port", board.port, "--config", str(tmp_path / "small.json")]
        assert cli.main(argv) == 0
    finally:
        board.close()
    out = capsys.readouterr().out
    assert f"identification word 0x{config_id(cfg):08x}" in out and "sizes 3-4-2, adam" in out
    for k, (name, _) in enumerate(fields[1:], 1):  # flags (100 = 0b1100100) print as names
        assert f"{name} {100 + k}" in out


def test_board_info_names_an_unknown_hash(capsys):
    board = ScriptedBoard([(b"", id_answer(0x12345678))])
    try:
        assert cli.main(["board", "info", "--port", board.port]) == 1
    finally:
        board.close()
    out = capsys.readouterr().out
    assert "identification word 0x12345678" in out
    assert f"CoreConfig preset up5k 0x{config_id(CoreConfig.up5k()):08x}" in out


@pytest.mark.sim
@pytest.mark.slow
def test_train_and_eval_on_a_simulated_board_equal_golden(tmp_path, capsys):
    """`--backend serial:PTY` against the up5k UART top under Verilator (minutes: the state load
    and every gradient read move 1600 synapse words through the simulated line)."""
    from evcore.tb.link.sim_board import SimulatedBoard

    short = ["train", "yinyang", "--model", "fixed", "--epochs", "1", "--train-samples", "32",
             "--eval-samples", "4", "--fresh-samples", "0", "--quiet"]
    assert cli.main([*short, "--out", str(tmp_path / "golden")]) == 0
    with SimulatedBoard(CoreConfig.up5k()) as board:
        assert cli.main([*short, "--backend", f"serial:{board.port}", "--out", str(tmp_path / "board")]) == 0
        capsys.readouterr()
        argv = ["eval", str(tmp_path / "board"), "--samples", "4", "--backend", f"serial:{board.port}"]
        assert cli.main(argv) == 0
        on_board = capsys.readouterr().out
    gold, got = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("golden", "board"))
    assert got.pop("backend").startswith("serial:") and gold.pop("backend") == "golden"
    assert without_wall_times(got) == without_wall_times(gold)
    with np.load(tmp_path / "golden/checkpoint.npz") as a, np.load(tmp_path / "board/checkpoint.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("weights_raw"))
    assert cli.main(["eval", str(tmp_path / "board"), "--samples", "4"]) == 0
    golden_eval = capsys.readouterr().out
    assert on_board.split("):")[1] == golden_eval.split("):")[1]  # the same accuracy, loss and spikes
