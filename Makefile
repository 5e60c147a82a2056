# The README's two commands: `make run` and `make test`. Both build .venv from nothing.
# `make perf`: issue #6's performance figures against their baselines and targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SOURCES := $(wildcard slubcy/*.pyx slubcy/*.pxd slubcy/*.h policies/*.pyx policies/*.pxd) setup.py pyproject.toml

.PHONY: run test perf install bench dashboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=69" wheel

# Editable install: setuptools builds the extensions in place, so the tree imports as is.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q "Cython>=3.0" "numpy>=1.26"
	$(BIN)/pip install -q --no-build-isolation -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job: every policy on churn, A/B, into results/ (about a minute on 2 cores).
run: $(VENV)/.installed
	$(BIN)/slubcy compare --workload churn --repeat 3 --seconds 1 --out results

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# asv, offline, on the installed tree: results for HEAD go to .asv/results/$(ASV_MACHINE)
# (spawn: the benchmarks start nogil threads; asv 0.6.0-0.6.5's auto launch means forkserver, and threading and fork do not mix).
ASV_MACHINE ?= $(shell hostname)
bench: $(VENV)/.installed
	$(BIN)/asv machine --yes --machine $(ASV_MACHINE)
	$(BIN)/asv run -E existing:same --machine $(ASV_MACHINE) --launch-method spawn \
		--set-commit-hash $$(git rev-parse HEAD) --show-stderr $(ASV_ARGS)

dashboard: $(VENV)/.installed
	$(BIN)/asv publish
	@echo "dashboard in .asv/html; preview it with: $(BIN)/asv preview  (http://127.0.0.1:8080)"

# Every figure with its baseline, measured in one process (about a minute); fails on a missed target.
perf: $(VENV)/.installed
	$(BIN)/python benchmarks/perf.py

clean:
	rm -rf build $(VENV) slubcy/*.c slubcy/*.so policies/*.c policies/*.so *.egg-info
