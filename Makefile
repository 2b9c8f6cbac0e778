# `make demo` and `make test` do all the set-up a fresh machine needs; `make install` alone is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages demo test bench loadtest knee clean

install: system-packages $(STAMP)

# redis-server for the embedded stack; docker-compose and promtool to check the production files;
# chromium for the live page's browser test (driven by Playwright; never `playwright install`).
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/dispatcher dev

# Two pytest processes, each with its own broker and redis: the suite mostly waits (processes starting,
# groups joining), and one process took 8.5 min of CI's 10 where two take under 5. A module stays
# in one process, so its module-scoped workers are started once.
test: install
	$(BIN)/pytest -q -n 2 --dist loadfile

# The end-to-end bench (dispatcher beside bare relays), then the Redis-level decision cost, then
# what a lead costs in Redis memory.
bench: install
	$(BIN)/python -m loadtest.bench
	$(BIN)/python -m loadtest.decision_cost
	$(BIN)/python -m loadtest.memory

# The promotion against the dispatcher, then the same promotion against each bare relay, then
# the knee of each (`make knee`).
loadtest: install
	$(BIN)/python -m loadtest.run --systems dispatcher "aiokafka relay" "faust relay"
	$(BIN)/python -m loadtest.knee

# The highest rate one and two workers, the bare faust agent and the aiokafka relay each hold
# with p99 <= 100 ms and nothing lost, in 250/s steps on fresh topics.
knee: install
	$(BIN)/python -m loadtest.knee

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info loadtest/results
