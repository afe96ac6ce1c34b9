# Everything installs into .venv; torch comes first, from the pinned CPU build,
# so that pip never resolves a CUDA build on its own.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deadweight-installed
TORCH  ?= torch==2.13.0
# torchvision's model code, for the zoo acceptance run only: outside site-packages so that
# nothing but bench/torchvision_models.py imports it (its CUDA-built extension cannot load).
TORCHVISION ?= torchvision==0.28.0

.PHONY: install run test lint screenshots zoo frontier upload-memory bench clean

install: $(STAMP)

# What serving needs (`make run`): torch, the client (./client, not on any index: before the
# package that depends on it), the package without extras.
SERVE_STAMP := $(VENV)/.deadweight-serve-installed

$(SERVE_STAMP): pyproject.toml client/pyproject.toml
	@test -x $(PY) || { echo "==> creating the virtual environment $(VENV)"; python3 -m venv $(VENV); }
	@echo "==> installing $(TORCH) first (the pinned CPU build; pip never resolves torch itself)"
	$(PY) -m pip install -q $(TORCH)
	@echo "==> installing the Python client (./client: deadweight-client, httpx only)"
	$(PY) -m pip install -q -e ./client
	@echo "==> installing deadweight and what serving needs (FastAPI, Celery, SQLAlchemy, ...)"
	$(PY) -m pip install -q -e .
	@touch $(SERVE_STAMP)

# Everything tests, linters and benchmarks need, on top.
$(STAMP): $(SERVE_STAMP)
	@echo "==> installing the test and lint tools (the [dev] extra)"
	$(PY) -m pip install -q -e '.[dev]'
	@echo "==> installing torchvision's model code into $(VENV)/torchvision (make zoo only)"
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/torchvision $(TORCHVISION)
	@touch $(STAMP)

run: $(SERVE_STAMP)
	@echo "==> serving http://127.0.0.1:8000 (API + embedded workers; docs at /docs); Ctrl-C stops"
	$(VENV)/bin/deadweight serve

# Two processes: the suite waits on subprocesses, leases and sockets as much as it computes.
# Each process's integration tests use a Redis database of their own (15, 14).
# worksteal: each process takes one contiguous half of the tests (a module's tests stay
# together, so module- and session-scoped servers and models are built once, not in both
# processes as `load`'s round-robin start does), and an idle one takes over the other's
# remaining tests.
test: install
	$(PY) -m pytest -q -n 2 --dist worksteal

lint: install
	$(VENV)/bin/ruff check pruning jobs service worker tests bench client
	$(VENV)/bin/mypy

# The README's pictures of the dashboard, taken by its browser test (Debian's chromium).
screenshots: install
	DEADWEIGHT_SCREENSHOTS=docs/images $(PY) -m pytest -q -p no:cacheprovider tests/service/test_dashboard_browser.py

# Issue 3's acceptance: `deadweight prune` on one or two members of every torchvision family.
zoo: install
	$(PY) -m bench.zoo

# Fewest parameters each pruning mode keeps within 0.5 accuracy points, on digits models.
frontier: install
	$(PY) -m bench.frontier

# Issue 10's bound: the API's memory while it receives the largest uploads of every format.
upload-memory: install
	$(PY) -m bench.upload_memory

# Issue 12's figures (bench/suite.py): every ratio as alternated runs, uploads, peak RSS and
# bench/api_load.py's figures, then one Markdown table. `make bench BENCH_ARGS=--quick`: short.
# Torch-Pruning (the `bench` extra, for the hand-written script it is compared with) needs
# only torch and numpy, both installed: --no-deps so that pip never resolves torch.
TORCH_PRUNING ?= torch-pruning==1.6.*
BENCH_STAMP   := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps '$(TORCH_PRUNING)'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.suite $(BENCH_ARGS)

clean:
	rm -rf $(VENV) deadweight-data .pytest_cache .mypy_cache .ruff_cache
