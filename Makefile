# One entry point for everything: `make demo`, `make test`, `make lint`, `make bench`,
# `make docs`, `make torture`.
# Each target sets up what it needs: a virtual environment in .venv with zizq
# (its Cython extension built) and the dev tools, and from Debian's packages
# what is missing of redis-server, a C compiler, Python's headers and its
# venv module.
#
# Every install takes its versions from the lock, lock/constraints.txt (as
# PIP_CONSTRAINT, so the build of the extension obeys it too), so a release
# elsewhere cannot change what `make test` runs. `make lock` refreshes it on
# purpose; `make test-latest` runs the suite on the newest releases and
# `make test-oldest` on the lowest versions pyproject.toml declares.

PYTHON ?= python3
VENV ?= .venv
LOCK ?= lock/constraints.txt
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Without a lock (LOCK=), pip takes the newest releases.
PIN := $(if $(LOCK),PIP_CONSTRAINT=$(abspath $(LOCK)))

.PHONY: setup build-deps redis chromium demo docs test test-ext test-pure torture test-latest test-oldest lock lint bench clean

setup: $(VENV)/.installed redis chromium

$(VENV)/.installed: pyproject.toml setup.py zizq/_speedups.pyx $(LOCK) | build-deps
	$(PYTHON) -m venv $(VENV)
	$(PIN) $(PY) -m pip install -q --upgrade pip
	$(PIN) $(PY) -m pip install -q -e '.[dev]'
	touch $@

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

# The dashboard's browser tests (tests/test_web_browser.py) drive Debian's
# headless chromium through its chromedriver, with Selenium.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
		echo "installing chromium and chromium-driver from Debian's packages"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: setup
	$(PY) examples/demo.py

# The suite runs twice: with the Cython extension (and fails if it did not
# load), then on the pure-Python twin. The fault-injection and scale-out
# scenarios (Cluster, Sentinel, TLS/ACL, multi-process) and the dashboard's
# browser tests do not depend on the code path, so they run once. The
# documentation site is built too, so a broken link or API reference fails
# the tests.
test: test-ext test-pure docs

test-ext: setup
	$(PIN) ZIZQ_EXPECT_EXTENSION=1 $(PY) -m pytest -q -p no:cacheprovider

test-pure: setup
	$(PIN) ZIZQ_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider -m "not faults and not scale and not browser"

# The fault-history checker (tests/history.py) over many seeds: each runs a
# randomized workload with random faults against real redis-server and
# `zizq worker` processes and checks the invariants on its history (about
# 12 s a seed). `make test` runs a few fixed seeds (tests/test_history.py).
# SEEDS=N seeds from START (1; START=0 picks a random start); a failing seed
# prints the command that replays it.
SEEDS ?= 20
START ?= 1
torture: setup
	$(PY) -m tests.history --seeds $(SEEDS) --start $(START)

# The declared ranges, at both ends, each in a venv of its own. The newest
# releases are looked up anew at every run.
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest LOCK=

test-oldest:
	$(MAKE) test VENV=.venv-oldest LOCK=lock/constraints-oldest.txt

# Resolve both locks anew, from pyproject.toml: the newest releases for
# lock/constraints.txt, the declared lowest versions (lock/floors.py) of the
# runtime dependencies for lock/constraints-oldest.txt. Review the diff, run
# `make test` and `make test-oldest`, then commit.
lock: build-deps
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip
	.venv-lock/bin/pip install -q -e '.[dev]'
	{ echo "# make lock: the newest releases on $$(date -u +%F); make test installs these."; \
	  .venv-lock/bin/pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > lock/constraints.txt
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip
	$(PYTHON) lock/floors.py > .venv-lock/floors.txt
	PIP_CONSTRAINT=$(abspath .venv-lock/floors.txt) .venv-lock/bin/pip install -q -e '.[dev]'
	{ echo "# make lock: the lowest declared versions, resolved on $$(date -u +%F); make test-oldest installs these."; \
	  .venv-lock/bin/pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > lock/constraints-oldest.txt
	rm -rf .venv-lock

# The documentation site (mkdocs.yml), into site/. --strict turns every
# warning into an error: a link or anchor that leads nowhere, an API name
# that does not exist, a `zizq ... --help` that fails. (The variable
# silences a banner of Material about its successor.)
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

lint: setup
	$(VENV)/bin/ruff check zizq tests bench examples docs/hooks.py
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf .venv .venv-latest .venv-oldest .venv-lock build dist site *.egg-info zizq/_speedups.c zizq/*.so
