"""Synthesis flows for open FPGA toolchains."""
