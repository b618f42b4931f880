# SPDX-License-Identifier: Apache-2.0
# The otel-kubeskoop agent image. `make image` builds it (buildah, or `docker build` alike):
#
#   docker build --build-context wheels=<dir> -t otel-kubeskoop .
#
# where <dir> holds wheels of the pinned dependencies and of setuptools/wheel (`make wheelhouse`
# makes it with `pip wheel`), so the build needs no package index: it works offline and installs
# exactly what pyproject.toml pins. The build stage compiles the eBPF objects (clang) and the
# agent's wheel; the runtime stage has Python 3.11, libbpf1 and the installed wheel, and no
# compiler. The Helm chart (deploy/helm/otel-kubeskoop) runs it with a read-only root filesystem.

ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      clang llvm libbpf-dev make python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheels . /wheels
WORKDIR /src
# Dependencies first: this layer is reused until pyproject.toml changes.
COPY pyproject.toml ./
RUN python3 -m venv /opt/otel-kubeskoop \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/otel-kubeskoop/bin/pip install -q --no-index --find-links /wheels -r /tmp/requirements.txt
COPY bpf/ bpf/
COPY README.md ./
COPY otel_kubeskoop/ otel_kubeskoop/
RUN make -C bpf \
 && /opt/otel-kubeskoop/bin/pip wheel -q --no-index --find-links /wheels --no-deps --wheel-dir /dist . \
 && /opt/otel-kubeskoop/bin/pip install -q --no-index --find-links /wheels --no-deps /dist/otel_kubeskoop-*.whl \
 && /opt/otel-kubeskoop/bin/pip uninstall -q -y pip

FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 libbpf1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /opt/otel-kubeskoop /opt/otel-kubeskoop
ENV PATH=/opt/otel-kubeskoop/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBESKOOP_CONFIG=/etc/otel-kubeskoop/config.yaml
EXPOSE 9102
ENTRYPOINT ["otel-kubeskoop"]
CMD ["run"]
