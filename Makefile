# tickline: `make demo` runs a local exchange with simulated traders; `make test` runs the tests.
# Both create .venv with nothing but the system Python and install the project into it, and
# compile the engine's hot path with mypyc when a C compiler is there (else: pure Python).
# `make compiled` / `make pure` switch builds; TICKLINE_PURE=1 forces pure at run time.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean venv build compiled pure

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,browser,cluster]'
	-$(BIN)/python -m pip install --quiet --only-binary=:all: 'quickfix-ssl==1.15.1.post4' \
		|| echo "quickfix-ssl not installable here: the QuickFIX interop tests will be SKIPPED"
	-$(BIN)/python -m pip install --quiet -e '.[peers]' \
		|| echo "liquibook not installable here: bench matching --peers will leave it out"
	touch $(STAMP)

venv: $(STAMP)

# compiled if it can be (C compiler + mypyc), rebuilt only when a compiled module's source
# changed; never fails: without a compiler the pure-Python package is used
build: $(STAMP)
	$(BIN)/tickline build auto

compiled: $(STAMP)
	$(BIN)/tickline build compile

pure: $(STAMP)
	$(BIN)/tickline build clean

demo: build
	$(BIN)/tickline demo

# the whole suite on the default build, then the engine, journal, exchange and FIX tests again
# on the pure-Python modules (both builds must pass the same tests)
test: build
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/tickline --version
	$(BIN)/python -m pytest
	TICKLINE_PURE=1 $(BIN)/python -m pytest -q tests/matching tests/journal \
		tests/test_exchange.py tests/build tests/gateway/fix

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/tickline bench matching --json docs/bench-matching.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
