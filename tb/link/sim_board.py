"""`SimulatedBoard`: the UART top (`hdl.link.UartHostLink` around `hdl.core.Core`) under Verilator,
reachable through a pseudo-terminal, so the driver's `SerialTransport` talks to it exactly as to a
USB-UART (tests/sw/test_driver.py, `evcore board sim`).

    with SimulatedBoard(cfg) as board:
        core = BoardCore(cfg, SerialTransport(board.port))

The simulator runs in a background thread (one cocotb run, `tb/link/pty_bridge.py`) until the
`with` block ends. The UART runs at `divisor` cycles per bit (default 8, close to the fewest the
UART allows) so that a character costs 80 simulated cycles. Needs the dev install (cocotb, Verilator).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from evcore.golden.config import CoreConfig

__all__ = ["SimulatedBoard", "bridge_top", "uart_top"]

#: Clock of the simulated board: 8 MHz, so divisor 8 is 1 Mbaud (the clock's value only names
#: the baud rate; the simulation runs as fast as Verilator goes).
SIM_CLK_HZ = 8_000_000


def uart_top(cfg: CoreConfig, divisor: int = 8, timeout_s: float = 1e-3):
    """The UART top of a board: pins -> UART -> link framing -> HostLink -> Core."""
    from evcore.hdl.core import Core
    from evcore.hdl.link import UartHostLink
    from evcore.hdl.uart import UartTiming

    return UartHostLink(Core(cfg), UartTiming(SIM_CLK_HZ, SIM_CLK_HZ // divisor), timeout_s)


def bridge_top(board, timing):
    """The simulated design: the board's UART top and the host's end of the line, a `UartTx` on the
    board's rx pin and a `UartRx` on its tx pin; cocotb moves bytes through ``host_tx`` (in) and
    ``host_rx`` (out, one-cycle valid per character)."""
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    from evcore.hdl.uart import UartRx, UartTx

    class _BridgeTop(wiring.Component):
        def __init__(self):
            super().__init__({"host_tx": In(stream.Signature(8)), "host_rx": Out(stream.Signature(8))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.board = board
            m.submodules.tx = tx = UartTx(timing)
            m.submodules.rx = rx = UartRx(timing)
            wiring.connect(m, wiring.flipped(self.host_tx), tx.data)
            m.d.comb += [board.rx.eq(tx.tx), rx.rx.eq(board.tx), self.host_rx.payload.eq(rx.data.payload),
                         self.host_rx.valid.eq(rx.data.valid), rx.data.ready.eq(1)]
            return m

    return _BridgeTop()


class SimulatedBoard:
    """Context manager: build and start the simulated board; `port` is its pty's slave."""

    def __init__(self, cfg: CoreConfig, divisor: int = 8, max_wall_s: float = 600.0,
                 start_timeout_s: float = 300.0):
        self.cfg, self.divisor, self.max_wall_s = cfg, divisor, max_wall_s
        self.start_timeout_s = start_timeout_s
        self.port: str | None = None
        self._thread = None
        self._error: BaseException | None = None

    def __enter__(self) -> SimulatedBoard:
        from evcore.hdl.core import config_id
        from evcore.tb.harness import build_dir_for
        from evcore.toolenv import setup_tool_environment

        setup_tool_environment()
        self.node = f"uartcore-{config_id(self.cfg):08x}-d{self.divisor}"
        build = build_dir_for(self.node)
        build.mkdir(parents=True, exist_ok=True)
        self.port_file, self.stop_file = build / "port", build / "stop"
        self.port_file.unlink(missing_ok=True)
        self.stop_file.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._simulate, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.port_file.exists():
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulated board did not start: {self._error}")
            time.sleep(0.05)
        self.port = self.port_file.read_text()
        return self

    def _simulate(self):
        from evcore.tb.harness import run_cocotb

        board = uart_top(self.cfg, self.divisor)
        top = bridge_top(board, board.timing)
        try:
            run_cocotb(
                top, toplevel="evcore_uart_bridge", test_module="evcore.tb.link.pty_bridge",
                config={"divisor": self.divisor, "period_ns": 1_000_000_000 // SIM_CLK_HZ,
                        "port_file": str(self.port_file), "stop_file": str(self.stop_file),
                        "max_wall_s": self.max_wall_s},
                node_id=self.node,
                build_args=["-Wno-CASEINCOMPLETE", "-Wno-ASCRANGE"],  # as RtlCore's build
                extra_env={"COCOTB_TRUST_INERTIAL_WRITES": "1"},
                fast=True,  # the bridge touches the top's ports only
            )
        except BaseException as err:  # pytest.fail raises a BaseException; reported by stop()
            self._error = err

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        if self._thread is not None:
            Path(self.stop_file).touch()
            self._thread.join(timeout=60)
            self._thread = None

    def __exit__(self, *exc):
        self.stop()
        if self._error is not None and exc[0] is None:
            raise self._error
        return False
