# One entry point for everything: `make demo`, `make test`, `make lint`, `make bench`.
# Each target sets up what it needs: a virtual environment in .venv with zizq
# (its Cython extension built) and the dev tools, and redis-server from
# Debian's packages when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup redis demo test test-ext test-pure lint bench clean

setup: $(VENV)/.installed redis

$(VENV)/.installed: pyproject.toml setup.py zizq/_speedups.pyx
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# redis-server (which also runs Sentinel, with --sentinel) and redis-cli (which
# joins the test cluster: redis-cli --cluster create) come from Debian's
# redis-server and redis-tools packages.
redis:
	@{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || { \
		echo "installing redis-server and redis-tools from Debian's packages"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server redis-tools >/dev/null; }

demo: setup
	$(PY) examples/demo.py

# The suite runs twice: with the Cython extension (and fails if it did not
# load), then on the pure-Python twin. The fault-injection and scale-out
# scenarios (Cluster, Sentinel, TLS/ACL, multi-process) do not depend on the
# code path, so they run once.
test: test-ext test-pure

test-ext: setup
	ZIZQ_EXPECT_EXTENSION=1 $(PY) -m pytest -q -p no:cacheprovider

test-pure: setup
	ZIZQ_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider -m "not faults and not scale"

lint: setup
	$(VENV)/bin/ruff check zizq tests bench examples
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info zizq/_speedups.c zizq/*.so
