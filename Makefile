# Two commands for a fresh machine: `make run` and `make test`. Both create .venv when it is
# missing and (re)install only when pyproject.toml changed: `make run` the project and what a
# run needs (ray[tune], no dashboard extras), `make test` that plus the test toolchain.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
RUN_ARGS ?=
PYTEST_ARGS ?=
# pip compiles every file it installs (torch's, ray's: about 40 s of a fresh install here); Python
# compiles what is imported instead, the first time, so the venv's bytecode must be writable:
# PYTHONDONTWRITEBYTECODE (set on some machines) would make every process compile torch again.
PIP_INSTALL := -m pip install --quiet --disable-pip-version-check --no-compile
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast coverage lint bench install install-test clean

install: $(STAMP)
install-test: $(TEST_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -e .
	touch $(STAMP)

# The test toolchain over the run install (one install: a run stamp follows from it).
$(TEST_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -e '.[test]'
	touch $(STAMP) $(TEST_STAMP)

# The quick search on the default data, then the analysis; prints where the report is.
run: $(STAMP)
	@set -euo pipefail; \
	last=$$($(PY) -m search run --preset quick $(RUN_ARGS) | tee /dev/stderr | tail -n 1); \
	$(PY) -m search analyze "$${last#experiment: }"

# Two workers: most of the suite is real Ray runs; on two cores three workers gain little and four lose.
# loadgroup keeps the tests of one shared run (an xdist_group) on one worker, in the order
# tests/conftest.py gives them (longest first).
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder
test: $(TEST_STAMP)
	@started=$$(date +%s); $(PY) -m pytest $(XDIST) $(PYTEST_ARGS); status=$$?; \
	echo "pytest took $$(( $$(date +%s) - started )) s"; exit $$status

# The whole suite under coverage.py (branch coverage, subprocesses included: pyproject.toml);
# prints each package's total. Slower than `make test`: not part of it.
coverage: $(TEST_STAMP)
	@$(PY) -m coverage erase; $(PY) -m coverage run -m pytest $(XDIST) -q $(PYTEST_ARGS); status=$$?; \
	$(PY) -m coverage combine -q; for package in search vae analysis; do \
		echo "$$package: $$($(PY) -m coverage report --include="$$package/*" --format=total)% (lines and branches)"; done; exit $$status

# The unit layer only: no Ray started, no end-to-end command (23 s here).
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(PY) -m ruff check .

# Benchmarks (not tests): each prints and writes bench/results/<name>.json. About 6 hours here;
# gpu.py needs a CUDA GPU and runs apart (docs/performance.md);
# study_budget.py, paper_memory.py and seed_spread.py --full need the full MNIST at ../shared/mnist.
bench: $(TEST_STAMP)
	cd bench && ../$(PY) train_loop.py && ../$(PY) recipe.py --seeds 2 && ../$(PY) scheduling.py && \
		../$(PY) parallel.py && ../$(PY) fixed_cost.py && ../$(PY) driver_scale.py && ../$(PY) search_quality.py && \
		../$(PY) study_budget.py && ../$(PY) paper_memory.py && ../$(PY) seed_spread.py --preset quick --seeds 6 && \
		../$(PY) seed_spread.py --preset paper --full --epochs 15 --latent-dims 15,20 --seeds 3 && \
		../$(PY) calibration.py --drift && ../$(PY) replicates.py --runs 5 && \
		../$(PY) likelihood_cost.py && ../$(PY) seed_spread.py --preset quick --seeds 4 --name seed_spread_quick_likelihood && \
		../$(PY) study_budget.py --only-15-epochs --threads 1 --name study_budget_latent_use && \
		../$(PY) calibration.py --metric nll --drift --name calibration_nll && ../$(PY) replicates.py --runs 4 --metric nll && \
		../$(PY) overhead.py --parts short,bare,memory,storage,checkpoint,quick

clean:
	rm -rf $(VENV) *.egg-info
