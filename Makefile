# The README's commands. Each sets up what it needs (a virtual environment in .venv) first,
# so that a fresh machine with only python3 gets from clone to running in one command.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# constraints.txt: the versions the tests last passed with (make lock rewrites it)
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
ARGS   ?=

CHROMIUM ?= /usr/bin/chromium

.PHONY: serve classroom test build bench lint lock clean help chromium

help:
	@echo "make serve   set up, build what is missing, serve the dashboard on 127.0.0.1:5006"
	@echo "make classroom  the same for a class: every interface, classroom mode, 2 workers"
	@echo "make test    set up (torch, test tools, Chromium) and run the whole test suite"
	@echo "make build   retrain the tokenizer and every model, re-export static/ (about 25 min)"
	@echo "make bench   run the benchmarks, about 8 min (ratios against reference implementations)"
	@echo "make lint    ruff"
	@echo "make lock    pin constraints.txt to the versions installed in .venv"

# Run-time dependencies only: serving never needs torch.
$(VENV)/.run: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

# Build and test extras: torch==2.13.0 (CPU), onnx, transformers, tiktoken, playwright...
$(VENV)/.dev: $(VENV)/.run
	$(PIP) -e '.[build,test]'
	touch $@

static/manifest.json:
	$(MAKE) $(VENV)/.dev
	$(PY) -m models.build

serve: $(VENV)/.run
	@test -f static/manifest.json || $(MAKE) static/manifest.json
	$(PY) panel_serve.py $(ARGS)

# A class on the local network: prints the address to give students.
classroom: ARGS := --classroom --address 0.0.0.0 --num-procs 2 $(ARGS)
classroom: serve

build: $(VENV)/.dev
	$(PY) -m models.build $(ARGS)

# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "The browser tests need Chromium at $(CHROMIUM): sudo apt-get install chromium" >&2; \
	    exit 1; \
	  fi; }

test: $(VENV)/.dev chromium
	@test -f static/manifest.json || $(MAKE) static/manifest.json
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.dev
	$(PY) -m benchmarks.bench_runtime
	$(PY) -m benchmarks.bench_kv_cache
	$(PY) -m benchmarks.bench_tiles
	$(PY) -m benchmarks.bench_bpe
	$(PY) -m benchmarks.bench_browser
	$(PY) -m benchmarks.bench_snapshot
	$(PY) -m benchmarks.load

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# After a green make test on newer releases: record them as the versions to install.
lock: $(VENV)/.dev
	{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable \
	  | grep -v '^#' | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
