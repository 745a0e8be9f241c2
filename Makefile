# bootsync developer entry points. Everything runs from a clean clone on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SSTREAM_VENV ?= .venv-simplestreams

.PHONY: setup demo demo-mirror test lint typecheck pytest bench clean

$(BIN)/bootsync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Canonical's python-simplestreams shares our `simplestreams` import name, so it
# lives in its own venv and is only ever run as a peer program (sstream-mirror).
$(SSTREAM_VENV)/bin/sstream-mirror:
	$(PYTHON) -m venv $(SSTREAM_VENV)
	$(SSTREAM_VENV)/bin/pip install --quiet python-simplestreams
	touch $@

setup: $(BIN)/bootsync $(SSTREAM_VENV)/bin/sstream-mirror

demo: $(BIN)/bootsync
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

demo-mirror: $(BIN)/bootsync
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo-mirror.sh

lint: $(BIN)/bootsync
	$(BIN)/ruff check .

typecheck: $(BIN)/bootsync
	$(BIN)/mypy

pytest: setup
	SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" $(BIN)/pytest -q

test: lint typecheck pytest

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" SSTREAM_BIN="$(CURDIR)/$(SSTREAM_VENV)/bin" \
	    $(BIN)/python bench/mirror_bench.py

clean:
	rm -rf $(VENV) $(SSTREAM_VENV) demo-data bench/work
