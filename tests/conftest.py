from evcore.toolenv import setup_tool_environment

setup_tool_environment()
