# The two commands of README: `make run` (the supervisor with the example app on the embedded
# Redis) and `make test`. Both create ./.venv on first use; nothing else needs installing.
# `make test-faults` runs the slower fault tier; CI runs both.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-faults fuzz bench lint clean

$(BIN)/tq-master: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,examples,dev]"
	@touch $@

run: $(BIN)/tq-master
	$(BIN)/python -m examples.demo $(ARGS)

# the everyday suite (~4 minutes on 2 cores); the fault suite is its own tier
test: $(BIN)/tq-master
	$(BIN)/python -m pytest -m "not faults"

# tests/faults: real processes killed, stopped and starved, runs counted on a second Redis
test-faults: $(BIN)/tq-master
	$(BIN)/python -m pytest -m faults tests/faults

# the decoder fuzz (tests/unit/test_decoder_fuzz.py) with 50x the examples CI runs (~2 minutes)
fuzz: $(BIN)/tq-master
	TQ_FUZZ_EXAMPLES=$${TQ_FUZZ_EXAMPLES:-7500} $(BIN)/python -m pytest tests/unit/test_decoder_fuzz.py -p no:cacheprovider

bench: $(BIN)/tq-master
	$(BIN)/python bench/core.py

# ruff on everything; mypy on the package as it is installed (tq, its subpackages), from a tree
# of links that mirrors setup.cfg's package_dir
lint: $(BIN)/tq-master
	$(BIN)/ruff check .
	rm -rf .lint && mkdir -p .lint/tq
	for f in shared/*; do ln -s ../../$$f .lint/tq/; done
	for d in supervisor worker dashboard systemd; do ln -s ../../$$d .lint/tq/$$d; done
	MYPYPATH=.lint $(BIN)/mypy -p tq

clean:
	-[ -x $(BIN)/tq ] && $(BIN)/tq -q embedded stop   # do not orphan the embedded redis-server
	rm -rf $(VENV) .tq build *.egg-info
