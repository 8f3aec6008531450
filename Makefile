# mxflow: two commands for a new user (see README.md).
#   make demo   install what is missing, simulate a small collection, process it
#   make test   run the test suite (CI runs it too, slow tests included)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO   ?= mxflow-demo
PYTEST_ARGS ?=

.PHONY: demo test test-fast install dials venv lint bench clean check

demo: install
	$(BIN)/mxflow demo --workdir $(DEMO)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# skip the slow end-to-end tests (CI runs everything)
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

install: dials venv

# installation self-test: OK / WARN / FAIL per item, with the fix for each
check: venv
	$(BIN)/mxflow check

# DIALS is the integration engine; Debian/Ubuntu ship it as a package.
# A DIALS already on PATH (for example from conda) is used as it is.
dials:
	@if command -v dials.version >/dev/null 2>&1; then \
	  echo "DIALS found: $$(command -v dials.version)"; \
	else \
	  echo "DIALS not on PATH: installing it with apt-get (Debian package 'dials')"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q dials bitshuffle; \
	fi
	@# Debian's DIALS reads bitshuffle-compressed Eiger data through the HDF5 plugin
	@# of the 'bitshuffle' package (a conda DIALS brings its own).
	@if [ "$$(command -v dials.version)" = /usr/bin/dials.version ] && ! dpkg -s bitshuffle >/dev/null 2>&1; then \
	  echo "installing the HDF5 bitshuffle plugin (Debian package 'bitshuffle')"; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q bitshuffle; \
	fi

venv: $(BIN)/.mxflow-installed

$(BIN)/.mxflow-installed: pyproject.toml
	@if ! $(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
	  echo "mxflow needs Python >= 3.11 ($(PYTHON))"; exit 1; fi
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	  echo "installing python3-venv with apt-get"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q python3-venv; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(DEMO) bench/out
