# Everything installs into .venv; torch comes first, from the pinned CPU build,
# so that pip never resolves a CUDA build on its own.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deadweight-installed
TORCH  ?= torch==2.13.0
# torchvision's model code, for the zoo acceptance run only: outside site-packages so that
# nothing but bench/torchvision_models.py imports it (its CUDA-built extension cannot load).
TORCHVISION ?= torchvision==0.28.0

.PHONY: install run test lint zoo frontier upload-memory bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/torchvision $(TORCHVISION)
	touch $(STAMP)

run: install
	$(VENV)/bin/deadweight serve

# Two processes: the suite waits on subprocesses, leases and sockets as much as it computes.
# Each process's integration tests use a Redis database of their own (15, 14).
test: install
	$(PY) -m pytest -q -n 2

lint: install
	$(VENV)/bin/ruff check pruning jobs service worker tests bench
	$(VENV)/bin/mypy

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
