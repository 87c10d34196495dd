PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench bench-peer soak clean setup

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); } \
	  || { echo "cannot create $(VENV): install Python 3.11 with venv (Debian: apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/bridge demo

test: $(STAMP)
	@bash scripts/ensure-chromium.sh
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# Minutes under random faults and kill -9 (not part of `make test`): `make soak MINUTES=10`.
MINUTES ?= 4
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(MINUTES)

# Alertmanager (installed with apt-get as root if missing), the bridge and a bare forwarder
# side by side: one table and the ratios (bench/peer.py).
bench-peer: $(STAMP)
	$(BIN)/python -m bench.peer

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
