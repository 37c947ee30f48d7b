# amaranth: UnusedElaboratable=no
"""`evcore.hdl.protocol.HostLink`: the register map's read check, as the mutation run found it
untested (docs/mutation.md): a READ of a register address that names no register (between the
last `Reg` and LAYER_COUNT, or past the last layer count) is BAD_ADDRESS, every named one is OK.
"""

from evcore.golden.config import CoreConfig
from evcore.hdl.core import Reg, Region
from evcore.hdl.protocol import Op, Status, command

from .test_protocol import SMALL, simulate


def test_read_of_an_unnamed_register_is_bad_address():
    cfg = CoreConfig(**SMALL)
    named = [r.value for r in Reg if r is not Reg.LAYER_COUNT]
    named += [Reg.LAYER_COUNT.value + l for l in range(cfg.n_layers)]
    got = {}

    async def bench(link, dut):
        for a in range(Reg.LAYER_COUNT.value + cfg.n_layers + 2):
            status, _ = await link.transact(command(link.frame, Op.READ, region=Region.REG, addr=a))
            got[a] = status

    simulate(cfg, bench)
    assert got == {a: Status.OK if a in named else Status.BAD_ADDRESS for a in got}
