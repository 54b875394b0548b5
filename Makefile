# Kebiao: `make run` serves the bot, `make test` runs the whole suite. Both create .venv on first use.
# `make run` installs what running needs; `make test` adds the test and lint tools.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
RUN_STAMP = $(VENV)/.installed-run
DEV_STAMP = $(VENV)/.installed-dev
# An editable install: edits take effect without reinstalling. setuptools' build backend warns on every
# editable build ("Editable installation ... be careful with folders"): advice for packagers, silenced here.
PIP_INSTALL = PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e

.PHONY: run test lint bench clean

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP_INSTALL) .
	@touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP_INSTALL) '.[dev]'
	@touch $(RUN_STAMP) $(DEV_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/kebiao serve

test: $(DEV_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

bench: $(DEV_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
