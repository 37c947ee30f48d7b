"""evcore: on-chip EventProp training of spiking neural networks, from float reference to RTL.

The top-level folders of the repository are the subpackages of this package:
``evcore.golden`` (float and fixed-point models), ``evcore.hdl`` (Amaranth), ``evcore.tb``
(cocotb testbenches), ``evcore.sw`` (host software), ``evcore.synth``, ``evcore.bench``.
"""

__version__ = "0.1.0"
