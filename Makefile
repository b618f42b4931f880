# otel-kubeskoop. `make run` runs the agent here on config/default.yaml; `make test` runs every test.
# Both set up what they need first (Debian packages, then a virtualenv), idempotently.

VENV ?= .venv
PYTHON ?= python3
# iproute2: the privileged tests create namespaces and veth pairs; python3-venv: the virtualenv.
APT_PACKAGES := python3-venv python3-pip iproute2
PYTEST_ARGS ?=

.PHONY: setup system-packages run test test-unit bench docs clean

setup: $(VENV)/.installed

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

run: setup
	$(VENV)/bin/otel-kubeskoop run -c config/default.yaml

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: setup
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/cycle_cost.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

docs: setup
	$(VENV)/bin/python -m otel_kubeskoop.docs docs
