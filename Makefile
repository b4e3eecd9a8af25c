# tickline: `make demo` runs a local exchange with simulated traders; `make test` runs the tests.
# Both create .venv with nothing but the system Python and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,browser,cluster]'
	-$(BIN)/python -m pip install --quiet --only-binary=:all: 'quickfix-ssl==1.15.1.post4' \
		|| echo "quickfix-ssl not installable here: the QuickFIX interop tests will be SKIPPED"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tickline demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/tickline bench matching --json docs/bench-matching.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
