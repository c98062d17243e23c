# Two commands matter: `make demo` and `make test`. Everything they need is
# installed into the project (.venv for Python, .tools/ for the Claude Code CLI),
# plus Debian packages for the test tools.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
# The pinned CLI: make demo, make test and the loop's fallback binary use it.
CLAUDE_CODE_PINNED := 2.1.197
CLAUDE := .tools/claude/node_modules/.bin/claude
# The dashboard's charts (uPlot, served as it is: no build step).
UPLOT_VERSION := 1.6.32
UPLOT := .tools/web/node_modules/uplot/dist/uPlot.iife.min.js
# ccusage, the transcript cost report's reference in the tests and the benchmark (20.0.26
# lacks its Linux binary in the registry; the binary comes as a package per platform).
CCUSAGE_VERSION := 20.0.24
CCUSAGE := .tools/ccusage/node_modules/.bin/ccusage
CCUSAGE_NATIVE := @ccusage/ccusage-linux-$(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)
# The Python packages: the harness's own and the tests' (packaging/install.sh: requirements.txt alone).
REQUIREMENTS ?= requirements-dev.txt
# make install / make uninstall (packaging/install.sh --help says more)
PREFIX ?= /opt/harness
INSTALL_ARGS ?=
# The CLI make test-e2e runs the end-to-end suite against: a version or "latest".
CLAUDE_CODE_VERSION ?= $(CLAUDE_CODE_PINNED)
SH_FILES := loop.sh $(wildcard lib/*.sh scripts/*.sh tests/bats/*.bash tests/*.sh) tests/mocks/claude packaging/install.sh

.PHONY: setup demo docs test test-e2e test-deps lint shellcheck pylint bats pytest bench clean install uninstall

setup: $(PY) $(CLAUDE) $(UPLOT) $(CCUSAGE)

$(PY): requirements.txt $(REQUIREMENTS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	touch $(PY)

$(CLAUDE):
	npm install --silent --no-audit --no-fund --prefix .tools/claude @anthropic-ai/claude-code@$(CLAUDE_CODE_PINNED)
	$(CLAUDE) --version

$(UPLOT):
	npm install --silent --no-audit --no-fund --prefix .tools/web uplot@$(UPLOT_VERSION)
	test -f $(UPLOT)

$(CCUSAGE):
	npm install --silent --no-audit --no-fund --prefix .tools/ccusage ccusage@$(CCUSAGE_VERSION) $(CCUSAGE_NATIVE)@$(CCUSAGE_VERSION)
	$(CCUSAGE) --version

install:
	packaging/install.sh --prefix "$(PREFIX)" $(INSTALL_ARGS)

uninstall:
	packaging/install.sh --uninstall --prefix "$(PREFIX)"

demo: setup
	scripts/demo.sh

# The generated tables in docs/ (configuration keys, verdicts), from their one source.
docs: $(PY)
	PYTHONPATH=lib $(PY) -m harness.cli.gendocs

test-deps:
	tests/install-deps.sh

test: test-deps setup lint bats pytest

lint: shellcheck pylint

shellcheck:
	shellcheck -x $(SH_FILES)
	tests/lint_subst.sh

pylint: $(PY)
	$(VENV)/bin/ruff check lib/harness tests/python tests/fakeapi tests/bench
	$(VENV)/bin/mypy --strict lib/harness tests/fakeapi/server.py

bats: setup
	bats --print-output-on-failure tests/bats

# The end-to-end suite against any CLI version: CLAUDE_CODE_VERSION=latest make test-e2e
test-e2e: test-deps setup
	bin=$$(tests/install-claude.sh $(CLAUDE_CODE_VERSION)); \
	HARNESS_TEST_CLAUDE=$$bin bats --print-output-on-failure tests/bats/e2e.bats

pytest: $(PY) $(UPLOT) $(CCUSAGE)
	$(PY) -m pytest -q tests/python

# Benchmarks, not tests: figures with their targets (tests/bench/). About 15 minutes,
# 1 GB in .bench/ for the scan benchmark (BENCH_SCAN_MB to change it), and 0.5 GB in
# $TMPDIR for the report benchmark's 100,000 receipt files.
bench: test-deps setup
	$(PY) tests/bench/bench_scan.py
	$(PY) tests/bench/bench_sidecar.py
	$(PY) tests/bench/bench_watch.py
	$(PY) tests/bench/bench_overhead.py
	$(PY) tests/bench/bench_parallel.py
	$(PY) tests/bench/bench_pipeline.py
	$(PY) tests/bench/bench_report.py
	$(PY) tests/bench/bench_store.py
	$(PY) tests/bench/bench_feed.py
	$(PY) tests/bench/bench_dashboard.py
	$(PY) tests/bench/bench_fleet.py
	$(PY) tests/bench/bench_transcript_cost.py
	$(PY) tests/bench/bench_retention.py
	$(PY) tests/bench/bench_analyze.py
	$(PY) tests/bench/bench_governor.py

clean:
	rm -rf $(VENV) .tools .demo .bench .pytest_cache .mypy_cache .ruff_cache
