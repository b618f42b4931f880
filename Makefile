# otel-kubeskoop. `make run` runs the agent here on config/default.yaml; `make test` runs every test.
# Both set up what they need first (Debian packages, then a virtualenv), idempotently.

VENV ?= .venv
PYTHON ?= python3
# python3-venv: the virtualenv. iproute2: the privileged tests create namespaces and veth pairs.
# clang llvm libbpf-dev: build bpf/*.bpf.c; libbpf1: loads them at run time; bpftool: regenerates
# bpf/include/<arch>/vmlinux.h, and the privileged tests cross-check BTF with it.
# prometheus: the end-to-end test scrapes the compat endpoint with a real Prometheus.
# iptables: the eBPF tests drop packets with rules; iperf3: the datapath benchmarks.
APT_PACKAGES := python3-venv python3-pip iproute2 iptables iperf3 clang llvm libbpf-dev libbpf1 bpftool prometheus
PYTEST_ARGS ?=

.PHONY: setup system-packages bpf run test test-unit golden bench docs clean

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

# The BPF objects are built from source every time (CI too); up to date, this takes milliseconds.
bpf: system-packages
	$(MAKE) -C bpf

run: setup bpf
	$(VENV)/bin/otel-kubeskoop run -c config/default.yaml

test: setup bpf
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: setup
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

# Rewrite tests/fixtures/golden/* from the whole pipeline over the fixtures; review the diff.
golden: setup
	$(VENV)/bin/pytest tests/unit/test_golden.py --update-golden -q

bench: setup bpf
	$(VENV)/bin/python bench/cycle_cost.py
	$(VENV)/bin/python bench/churn.py
	$(VENV)/bin/python bench/tcpsummary.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	$(MAKE) -C bpf clean

docs: setup
	$(VENV)/bin/python -m otel_kubeskoop.docs docs
