# Two entry points that work on a fresh machine with Python 3.11 and make:
#   make demo   - create .venv, install, run a simulated MSC expansion on the embedded defaults
#   make test   - create .venv, install, run the whole test suite
# Installs come from lock files with SHA-256 hashes (requirements.lock for the main
# environment, requirements-opentrons.lock for the Opentrons one); `make lock`
# regenerates them after a change to pyproject.toml or requirements-opentrons.in,
# and `make lock-check` (also a test) says whether they still match, offline.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# opentrons cannot share an environment with prefect>=3.4.2 (jsonschema pins): its
# protocol API and simulator live in their own venv, used as a subprocess.
OT_VENV := .venv-opentrons
OT_STAMP := $(OT_VENV)/.installed
OT_IN := requirements-opentrons.in
OT_LOCK := requirements-opentrons.lock
# uv writes the locks (it reads the package index; nothing else needs the network)
UV_VERSION := uv>=0.5,<1
COMPILE := uv pip compile --generate-hashes --universal --python-version 3.11 --quiet

.PHONY: demo test lint venv clean lock lock-check

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=...)"; exit 1; }
	$(PYTHON) scripts/lockfile.py check $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

$(OT_STAMP): $(OT_LOCK)
	$(PYTHON) scripts/lockfile.py check $(OT_LOCK) $(OT_IN)
	$(PYTHON) -m venv $(OT_VENV)
	$(OT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OT_VENV)/bin/python -m pip install --quiet --require-hashes -r $(OT_LOCK)
	@touch $(OT_STAMP)

lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet '$(UV_VERSION)'; }
	$(BIN)/$(COMPILE) pyproject.toml --extra test -o $(LOCK)
	$(BIN)/$(COMPILE) $(OT_IN) -o $(OT_LOCK)
	$(BIN)/python scripts/lockfile.py stamp $(LOCK) pyproject.toml
	$(BIN)/python scripts/lockfile.py stamp $(OT_LOCK) $(OT_IN)

lock-check:
	$(PYTHON) scripts/lockfile.py check $(LOCK) pyproject.toml
	$(PYTHON) scripts/lockfile.py check $(OT_LOCK) $(OT_IN)

# The demo starts a temporary Prefect server and waits for it up to
# PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (default 600 s here), saying so.
demo: $(STAMP)
	$(BIN)/workcell demo

# Two workers, each taking whole test files (a file's tests share its fixtures and run
# in order): most tests wait on the child processes they start, so two files at once
# use both cores. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: $(STAMP) $(OT_STAMP)
	WORKCELL_OPENTRONS_PYTHON=$(abspath $(OT_VENV))/bin/python $(BIN)/python -m pytest -q \
	  -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(OT_VENV) .pytest_cache .mypy_cache .ruff_cache runs
