"""cocotb side of `evcore.tb.link.sim_board.SimulatedBoard`: the UART top of a board bridged to a
pseudo-terminal, so a host opens the pty's slave as its serial port (a simulated serial line).

The simulated design (`sim_board.BridgeTop`) is the board's `UartHostLink` with the host's end of
the line in the simulation too: a `UartTx` drives the board's ``rx`` pin and a `UartRx` listens
on its ``tx`` pin, 8N1 at `UartTiming.divisor` cycles per bit. This coroutine moves bytes between
the pty master and those two UARTs' byte ports (``host_tx``, ``host_rx``), a few awaits per byte
rather than one per bit. Between bytes the simulation runs on in steps of a few characters (the
core computes meanwhile); when neither side has sent a byte for IDLE_STEPS steps the bridge
waits for the host in `select` with a 1 ms timeout per step, so an idle board costs little CPU
(and a board still answering is never slowed). The pty's slave stays open here too, so the host
may close and reopen it.

The run ends when the stop file appears (or after `max_wall_s`); the slave's name goes to the
port file, written once the pty exists.
"""

import os
import select
import time
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, Timer

from evcore.tb.harness import check_ports, tb_config

#: Steps of this many characters while the host is silent; after IDLE_STEPS of them, each step
#: also waits up to 1 ms of wall time for the host.
STEP_CHARS = 4
IDLE_STEPS = 200
BITS_PER_CHAR = 10


@cocotb.test()
async def bridge(dut):
    tb = tb_config()
    divisor, period_ns = int(tb["divisor"]), int(tb["period_ns"])
    check_ports(dut)
    Clock(dut.clk, period_ns, unit="ns").start()
    dut.host_tx__valid.value = 0
    dut.host_tx__payload.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await FallingEdge(dut.clk)  # from here every input changes on a falling clock edge
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged both ways
    os.set_blocking(master, False)
    port_file = tb["port_file"]
    with open(port_file + ".tmp", "w") as f:
        f.write(os.ttyname(slave))
    os.replace(port_file + ".tmp", port_file)
    sent = [0]  # characters the board has sent
    cocotb.start_soon(_board_to_host(dut, master, sent))
    stop_file, t_end = tb["stop_file"], time.monotonic() + float(tb["max_wall_s"])
    char_ns = BITS_PER_CHAR * divisor * period_ns
    idle, seen = 0, 0
    try:
        while not os.path.exists(stop_file) and time.monotonic() < t_end:
            wait = 0.001 if idle >= IDLE_STEPS else 0
            ready, _, _ = select.select([master], [], [], wait)
            data = b""
            if ready:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    data = b""
            if not data:
                idle = 0 if sent[0] != seen else idle + 1
                seen = sent[0]
                await Timer(STEP_CHARS * char_ns, unit="ns")
                continue
            idle = 0
            for byte in data:
                # A Timer may end in the time step of a falling edge but before it: wait for the
                # edge itself, so that valid below spans a whole cycle.
                await FallingEdge(dut.clk)
                while not int(dut.host_tx__ready.value):
                    await FallingEdge(dut.clk)
                dut.host_tx__payload.value = byte
                dut.host_tx__valid.value = 1
                await FallingEdge(dut.clk)  # the rising edge between took it
                dut.host_tx__valid.value = 0
                # Skip most of the character (the transmitter is ready again in its last cycle).
                await Timer(char_ns - 4 * period_ns, unit="ns")
    finally:
        os.close(master)
        os.close(slave)


async def _board_to_host(dut, master, sent):
    while True:
        await RisingEdge(dut.host_rx__valid)  # one cycle per character (ready is always high)
        await ReadOnly()
        byte = int(dut.host_rx__payload.value)
        sent[0] += 1
        try:
            os.write(master, bytes([byte]))
        except OSError:
            return
