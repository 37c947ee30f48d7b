"""The UART top (`hdl.link.UartHostLink`) under Verilator behind a pseudo-terminal: a simulated board."""
