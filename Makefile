# make book: build the HTML book into _build/html.  make test: run every test.
# Both set up .venv on first use (editable install with the pinned toolchain in constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# One thread is deterministic and, with two jobs sharing two cores, the fastest (chapter 1 measures it).
export KIMI_MINI_THREADS ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup browser-deps book notebooks test test-unit test-notebooks lint format warmup warmup-controls warmup-vision clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The browser test's tools: playwright-core and MathJax from package-lock.json, and Debian's Chromium
# (installed here when we may: as root with apt-get; otherwise the browser test says what is missing).
browser-deps: node_modules/.package-lock.json
	@test -x "$${CHROMIUM:-/usr/bin/chromium}" || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "note: no Chromium; install it (apt-get install chromium) or set CHROMIUM to run the browser test"

node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null && npm ci --no-audit --no-fund --loglevel=error || echo "note: no npm; the browser test will be skipped outside CI"

book: setup
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going

test: setup browser-deps lint test-unit test-notebooks

# Unit tests, CLI tests, the book build with warnings as errors and the browser test (tests/test_book.py).
test-unit: setup
	$(BIN)/python -m pytest -q tests

# Every chapter twice at once, one core each: with this CPU's own kernels, and with torch's
# non-vectorised ones (ATEN_CPU_CAPABILITY=default), which round differently. A stored output that holds
# only on the CPU that made it fails here, as it would on a reader's laptop, Colab or another runner.
NBVAL := $(BIN)/python -m pytest -q --nbval --nbval-sanitize-with chapters/sanitize.cfg --nbval-cell-timeout=900 chapters
test-notebooks: setup
	@mkdir -p _build
	@ATEN_CPU_CAPABILITY=default $(NBVAL) -p no:cacheprovider >_build/nbval-default-kernels.log 2>&1 & probe=$$!; \
	$(NBVAL); native=$$?; \
	wait $$probe; probe=$$?; \
	echo "The same chapters with ATEN_CPU_CAPABILITY=default (torch's non-vectorised kernels):"; \
	cat _build/nbval-default-kernels.log; \
	test $$native = 0 && test $$probe = 0

lint: setup
	$(BIN)/ruff check kimi_mini tests chapters benchmarks book
	$(BIN)/ruff format --check kimi_mini tests chapters benchmarks book

format: setup
	$(BIN)/ruff format kimi_mini tests chapters benchmarks book
	$(BIN)/ruff check --fix kimi_mini tests chapters benchmarks book

# Re-execute every chapter in place (after changing code a chapter uses), so stored outputs stay true.
notebooks: setup
	cd chapters && for nb in *.ipynb; do ../$(BIN)/jupyter execute --inplace --timeout=900 $$nb || exit 1; done

# Regenerate the shipped warm-up policy (about 20 minutes on one CPU thread).
warmup: setup
	$(BIN)/kimi-mini warmup --threads 1 --out kimi_mini/checkpoints/warmup-cpu-tiny --replace-shipped

# Chapter 5's control warm-ups (searches only; searches that stop at their first candidate; one line, the
# one that hits), about 50 minutes.
warmup-controls: setup
	for p in cpu-tiny-search-only cpu-tiny-first-candidate cpu-tiny-short-cot; do \
	  $(BIN)/kimi-mini warmup --preset $$p --threads 1 --out kimi_mini/checkpoints/warmup-$$p --replace-shipped || exit 1; \
	done

# Chapter 11's joint text and image warm-up over the shipped cpu-tiny one (LLaVA's two stages: read, then
# reason), about 11 minutes.
warmup-vision: setup
	$(BIN)/kimi-mini warmup --preset cpu-tiny-vision --threads 1 --out kimi_mini/checkpoints/warmup-cpu-tiny-vision --replace-shipped

clean:
	rm -rf _build
