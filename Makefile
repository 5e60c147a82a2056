# The README's two commands: `make run` and `make test`. Both build .venv from nothing.
# `make perf`: issue #6's performance figures against their baselines and targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SOURCES := $(wildcard slubcy/*.pyx slubcy/*.pxd slubcy/*.h policies/*.pyx policies/*.pxd) setup.py pyproject.toml

.PHONY: run test perf install bench dashboard clean sanitize tsan

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77" wheel

# Editable install: setuptools builds the extensions in place, so the tree imports as is.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install -q "Cython>=3.0" "numpy>=1.26"
	$(BIN)/pip install -q --no-build-isolation -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job: every policy on churn, A/B, into results/ (about a minute on 2 cores).
run: $(VENV)/.installed
	$(BIN)/slubcy compare --workload churn --repeat 3 --seconds 1 --slub 4.0,7.0 --out results

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# asv, offline, on the installed tree: results for HEAD go to .asv/results/$(ASV_MACHINE)
# (spawn: the benchmarks start nogil threads; asv 0.6.0-0.6.5's auto launch means forkserver, and threading and fork do not mix).
ASV_MACHINE ?= $(shell hostname)
bench: $(VENV)/.installed
	$(BIN)/asv machine --yes --machine $(ASV_MACHINE)
	$(BIN)/asv run -E existing:same --machine $(ASV_MACHINE) --launch-method spawn \
		--set-commit-hash $$(git rev-parse HEAD) --show-stderr $(ASV_ARGS)

# asv publish, then every CDN script and stylesheet served from .asv/html/vendor
# (Debian's packages, fetched once with apt-get download): it renders offline.
dashboard: $(VENV)/.installed
	$(BIN)/asv publish
	$(BIN)/python benchmarks/dashboard.py .asv/html --cache .asv/vendor
	@echo "dashboard in .asv/html; preview it with: $(BIN)/asv preview  (http://127.0.0.1:8080)"

# Every figure with its baseline, measured in one process (about a minute); fails on a missed target.
perf: $(VENV)/.installed
	$(BIN)/python benchmarks/perf.py

clean:
	rm -rf build build-asan build-tsan $(VENV) slubcy/*.c slubcy/*.so policies/*.c policies/*.so *.egg-info

# Sanitizer builds (not part of `make test`; see the README's "Sanitizers"):
# each builds the extensions into its own copy of the tree (build-asan/,
# build-tsan/) with SLUBCY_SANITIZE and runs tests there with the runtime
# preloaded into the (uninstrumented) Python host.  SAN_PYTHON: an
# interpreter with Cython, numpy and the test extras (default: this
# project's .venv, made first if missing).
SAN_PYTHON ?= $(CURDIR)/$(BIN)/python
SAN_DEPS   = $(if $(filter $(CURDIR)/$(BIN)/python,$(SAN_PYTHON)),$(VENV)/.installed,)
SAN_TESTS  ?= tests/test_bad_input.py tests/test_concurrency.py tests/test_introspection.py \
              tests/test_validate.py tests/test_slub_rules.py tests/test_accounting.py \
              tests/test_objcg.py tests/test_kworker.py tests/test_geometry.py
TSAN_TESTS ?= tests/test_concurrency.py tests/test_introspection.py
SAN_TREE   = mkdir -p $(1) && cp -r slubcy policies tests setup.py pyproject.toml $(1)/ && \
             rm -f $(1)/slubcy/*.so $(1)/policies/*.so $(1)/slubcy/*.c $(1)/policies/*.c

sanitize: $(SAN_DEPS)
	$(call SAN_TREE,build-asan)
	cd build-asan && SLUBCY_SANITIZE=address,undefined $(SAN_PYTHON) setup.py -q build_ext --inplace
	cd build-asan && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 PYTHONPATH=. \
		$(SAN_PYTHON) -m pytest -q -p no:cacheprovider $(SAN_TESTS) \
		-k "not test_vectors_are_freed_with_their_slabs"    # an RSS bound: ASan's quarantine keeps freed memory

tsan: $(SAN_DEPS)
	$(call SAN_TREE,build-tsan)
	cd build-tsan && SLUBCY_SANITIZE=thread $(SAN_PYTHON) setup.py -q build_ext --inplace
	cd build-tsan && LD_PRELOAD="$$(gcc -print-file-name=libtsan.so)" \
		TSAN_OPTIONS="suppressions=$(CURDIR)/.tsan-suppressions report_signal_unsafe=0 exitcode=0 log_path=$(CURDIR)/build-tsan/tsan" \
		PYTHONPATH=. $(SAN_PYTHON) -m pytest -q -p no:cacheprovider $(TSAN_TESTS)
	@ls build-tsan/tsan.* >/dev/null 2>&1 && { echo "ThreadSanitizer reports:"; \
		grep -h "^SUMMARY" build-tsan/tsan.* | sort | uniq -c | sort -rn; exit 1; } || echo "tsan: no reports"
