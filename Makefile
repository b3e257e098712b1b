# The README's two commands: `make run` and `make test`. Both create .venv and install on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SYSPY  ?= python3

.PHONY: install run test lint bench browser-deps clean llamacpp

$(STAMP): pyproject.toml
	test -x $(PY) || $(SYSPY) -m venv $(VENV)
	$(PIP) install -q -U pip
	# torch first and pinned: 2.13.0 is a local CPU wheel here; anything looser pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	# scale: Ray + fsspec, so tests/test_scale.py runs its Ray executor checks instead of skipping them
	$(PIP) install -q -e ".[decoder,dev,scale,notebook]"
	touch $(STAMP)

install: $(STAMP)

# Debian chromium + chromedriver for the end-to-end dashboard test (never a browser download).
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ( (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "warning: could not install chromium/chromium-driver; the browser test will fail" )

lint: install
	$(VENV)/bin/ruff check .

# llama.cpp (pinned: the tree in the llama-cpp-python 0.3.36 sdist) and the bundled pair as GGUF, built
# once per machine into ${SPECDEC_CACHE:-~/.cache/specdec-diag}/llamacpp-0.3.36 (tests/test_llamacpp_live.py).
llamacpp: install
	bash scripts/build_llamacpp.sh $(PY)

test: install browser-deps llamacpp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

run: install
	$(VENV)/bin/specdec-diag dashboard sample_logs

bench: install
	$(PY) benchmarks/decoder.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/dashboard.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
