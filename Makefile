# Two entry points that work on a fresh machine with Python 3.11 and make:
#   make demo   - create .venv, install, run a simulated MSC expansion on the embedded defaults
#   make test   - create .venv, install, run the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# opentrons cannot share an environment with prefect>=3.4.2 (DEPENDENCIES.md): its
# protocol API and simulator live in their own venv, used as a subprocess.
OT_VENV := .venv-opentrons
OT_STAMP := $(OT_VENV)/.installed
OPENTRONS := opentrons==9.0.0

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(OT_STAMP):
	$(PYTHON) -m venv $(OT_VENV)
	$(OT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OT_VENV)/bin/python -m pip install --quiet '$(OPENTRONS)'
	@touch $(OT_STAMP)

demo: $(STAMP)
	$(BIN)/workcell demo

test: $(STAMP) $(OT_STAMP)
	WORKCELL_OPENTRONS_PYTHON=$(abspath $(OT_VENV))/bin/python $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(OT_VENV) .pytest_cache .mypy_cache .ruff_cache runs
