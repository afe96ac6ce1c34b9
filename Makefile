# Everything installs into .venv; torch comes first, from the pinned CPU build,
# so that pip never resolves a CUDA build on its own.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deadweight-installed
TORCH  ?= torch==2.13.0

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/deadweight serve

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check pruning jobs service worker tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) deadweight-data .pytest_cache .mypy_cache .ruff_cache
