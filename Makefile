# The README's two commands: `make demo` (the built-in study) and `make test` (the suite).
# Each sets itself up on a fresh clone: a .venv, torch's CPU build (pinned first, so nothing
# pulls a multi-GB CUDA build), then mtl itself; quick and idempotent once installed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	$(VENV)/bin/mtl study fruits-to-objects

test: install
	$(PY) -m pytest

bench: install
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) runs outputs multirun data/generated .pytest_cache
