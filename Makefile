# One entry point for everything: `make demo`, `make test`, `make lint`, `make bench`.
# Each target sets up what it needs: a virtual environment in .venv with zizq
# (its Cython extension built) and the dev tools, and from Debian's packages
# what is missing of redis-server, a C compiler, Python's headers and its
# venv module.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup build-deps redis demo test test-ext test-pure lint bench clean

setup: $(VENV)/.installed redis

$(VENV)/.installed: pyproject.toml setup.py zizq/_speedups.pyx | build-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The extension needs the C compiler Python was built with and Python.h;
# `-m venv` needs ensurepip, which Debian ships apart from Python. They come
# from build-essential and python3.X-dev / python3.X-venv for $(PYTHON)'s X.
build-deps:
	@missing=""; \
	cc=$$($(PYTHON) -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])'); \
	command -v "$$cc" >/dev/null 2>&1 || missing="$$missing build-essential"; \
	v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| missing="$$missing python$$v-dev"; \
	$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || missing="$$missing python$$v-venv"; \
	[ -z "$$missing" ] || { \
		echo "installing$$missing from Debian's packages"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; }

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
