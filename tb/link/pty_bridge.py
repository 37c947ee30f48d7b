"""cocotb side of `evcore.tb.link.sim_board.SimulatedBoard`: the UART pins of `UartHostLink` bridged
to a pseudo-terminal, so a host opens the pty's slave as its serial port (a simulated serial line).

Host -> board: bytes read from the pty master are driven onto ``rx`` as 8N1 characters, one bit
every `UartTiming.divisor` clock cycles, back to back. Board -> host: each character on ``tx`` is
sampled at the middle of its bits and written to the master. Between bytes the simulation runs on
in steps of a few characters (the core computes meanwhile); when the host has been quiet for a
while the bridge waits for it in `select` with a 1 ms timeout per step, so an idle board costs
little CPU. The pty's slave stays open here too, so the host may close and reopen it.

The run ends when the stop file appears (or after `max_wall_s`); the slave's name goes to the
port file, written once the pty exists.
"""

import os
import select
import time
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from evcore.tb.harness import check_ports, tb_config

#: Steps of this many characters while the host is silent; after IDLE_STEPS of them, each step
#: also waits up to 1 ms of wall time for the host.
STEP_CHARS = 4
IDLE_STEPS = 200


@cocotb.test()
async def bridge(dut):
    tb = tb_config()
    divisor, period_ns = int(tb["divisor"]), int(tb["period_ns"])
    check_ports(dut)
    Clock(dut.clk, period_ns, unit="ns").start()
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await FallingEdge(dut.clk)  # from here every rx change falls on a falling clock edge
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged both ways
    os.set_blocking(master, False)
    port_file = tb["port_file"]
    with open(port_file + ".tmp", "w") as f:
        f.write(os.ttyname(slave))
    os.replace(port_file + ".tmp", port_file)
    bit_ns = divisor * period_ns
    cocotb.start_soon(_board_to_host(dut, master, bit_ns))
    stop_file, t_end = tb["stop_file"], time.monotonic() + float(tb["max_wall_s"])
    idle = 0
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
                idle += 1
                await Timer(STEP_CHARS * 10 * bit_ns, unit="ns")
                continue
            idle = 0
            for byte in data:
                for level in (0, *((byte >> i) & 1 for i in range(8)), 1):  # start, LSB first, stop
                    dut.rx.value = level
                    await Timer(bit_ns, unit="ns")
    finally:
        os.close(master)
        os.close(slave)


async def _board_to_host(dut, master, bit_ns):
    while True:
        await FallingEdge(dut.tx)  # a start bit
        await Timer(bit_ns // 2, unit="ns")
        if dut.tx.value:
            continue  # a glitch (the transmitter has none)
        byte = 0
        for i in range(8):
            await Timer(bit_ns, unit="ns")
            byte |= int(dut.tx.value) << i
        await Timer(bit_ns, unit="ns")
        if int(dut.tx.value) == 1:  # stop bit
            try:
                os.write(master, bytes([byte]))
            except OSError:
                return
