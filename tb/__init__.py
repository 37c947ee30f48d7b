"""cocotb testbenches run under Verilator."""
