# `make demo` and `make test` work on a fresh clone: they create .venv when missing and install.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dsft-installed
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-fast bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# torch first, pinned: 2.13.0 is a CPU build on this disk; an unpinned torch pulls GBs of CUDA.
	@# A torch that is already installed (e.g. your CUDA build) is left alone.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	@$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/dsft demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

test: setup lint
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-fast: setup lint
	$(PY) -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/data_prepare.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/eval_throughput.py
	$(PY) benchmarks/serve_overhead.py

clean:
	rm -rf .dsft benchmarks/out
