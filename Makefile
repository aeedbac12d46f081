# Plenary — the two commands a new machine needs: `make demo` and `make test`.
# Each target installs what it needs itself (Debian packages as root, then a
# virtualenv in .venv), so a fresh Debian machine with Python 3.11 is enough.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
# Debian packages: ffmpeg decodes any audio the CLI is given; libopus0 backs the
# Opus decoder; sox and espeak-ng are used by tests to make synthetic audio.
# ngircd and inspircd are the IRC servers the relay's tests start; Debian's package
# named "ergo" is a chemistry program, so the Ergo IRC server is built from source
# (golang-go, git) into .venv/bin by $(STAMPS)/ergo.
APT_PACKAGES := ffmpeg libopus0 libsndfile1 sox ngircd inspircd golang-go git openssl
ERGO_VERSION := v2.11.1

.PHONY: demo test lint bench deps clean format

demo: deps
	$(VENV)/bin/plenary demo

test: deps lint
	$(PY) -m pytest -q -p no:cacheprovider

lint: deps
	$(VENV)/bin/ruff format --check orchestrator bots tests bench
	$(VENV)/bin/ruff check orchestrator bots tests bench
	$(VENV)/bin/mypy orchestrator bots

format: deps
	$(VENV)/bin/ruff format orchestrator bots tests bench
	$(VENV)/bin/ruff check --fix orchestrator bots tests bench

bench: deps
	$(PY) -m bench $(BENCH_ARGS)

deps: $(STAMPS)/apt $(STAMPS)/venv $(STAMPS)/ergo

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Plenary needs Python 3.11 (PYTHON=$(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	@# Debian's own python3 needs python3-venv for `-m venv`; a pyenv or source build has it.
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# v2.11.1 is the newest Ergo that Debian 12's Go (1.19) builds; its dependencies are vendored.
$(STAMPS)/ergo: $(STAMPS)/apt $(STAMPS)/venv
	@if ! { $(VENV)/bin/ergo --version || ergo --version; } 2>/dev/null | grep -q '^ergo-'; then \
		rm -rf $(STAMPS)/ergo-src && \
		git clone -q --depth 1 --branch $(ERGO_VERSION) https://github.com/ergochat/ergo $(STAMPS)/ergo-src && \
		(cd $(STAMPS)/ergo-src && CGO_ENABLED=0 GOFLAGS=-mod=vendor go build -o $(CURDIR)/$(VENV)/bin/ergo .) && \
		rm -rf $(STAMPS)/ergo-src; \
	fi
	@touch $@

clean:
	rm -rf $(VENV) $(STAMPS) .mypy_cache .ruff_cache .pytest_cache
