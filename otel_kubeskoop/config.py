# SPDX-License-Identifier: Apache-2.0
"""Load and validate the agent's YAML config.

The upstream KubeSkoop exporter schema loads unchanged (``metrics.probes``, ``event.probes``,
``event.sinks``, ``metrics.additionalLabels``, ``port``/``address``, ``debugMode``,
``enableController``); our own keys are ``otlp``, ``compat``, ``bpfStats``, ``reload``,
``eventStream``, ``nodeName``, ``clusterName`` and the host paths. Keys upstream ignores are ignored
here too, with one warning naming them, and ``null`` means "not set" (see
:mod:`otel_kubeskoop.config_upstream`). Unknown keys of our own sections, near misses of our keys,
unknown probe names and wrong types are errors naming the file, the key path and what was expected.
Where the file is silent, the standard ``OTEL_*`` variables apply.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from otel_kubeskoop import config_otlp
from otel_kubeskoop import environment_variables as env
from otel_kubeskoop.config_read import parse_document, read_file
from otel_kubeskoop.config_upstream import REMOVED_PROBES, UPSTREAM_ARGS, ignored_note, near, tolerate
from otel_kubeskoop.probe import Kind
from otel_kubeskoop.probes import REGISTRY

DEFAULT_INTERVAL_S = 15.0
CONFIG_ERROR = 2  # exit status for an invalid config; nothing was started
DEFAULT_ADDRESS = ":9102"
MIN_INTERVAL_S = 1.0  # below this the agent spends its time scanning (0.001 s took 0.6 of a core)
DEFAULT_SHUTDOWN_TIMEOUT_S = 20.0  # well under Kubernetes' default 30 s grace period
DEFAULT_MAX_TUPLE_SERIES = 10000


class ConfigError(Exception):
    """A config that cannot be used. ``problems`` is a list of (key path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    # The keys upstream's struct for this section has (it ignores any other); None: our own section.
    upstream_keys: ClassVar[frozenset[str] | None] = None


class ProbeEntry(_Strict):
    upstream_keys = frozenset({"name", "args"})
    name: str
    args: dict[str, Any] | None = None


SINKS = ("stdout", "stderr", "file", "loki")


class SinkEntry(_Strict):
    upstream_keys = frozenset({"name", "args"})
    name: str
    args: dict[str, Any] | None = None


class MetricsSection(_Strict):
    upstream_keys = frozenset({"probes", "additionalLabels"})
    probes: list[ProbeEntry] = Field(default_factory=list)
    additional_labels: list[str] = Field(default_factory=list, alias="additionalLabels")

    @field_validator("additional_labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        for item in v:
            name, sep, _ = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected 'name=value' (value may use ${{labels:key}}), got {item!r}")
        return v


class EventSection(_Strict):
    upstream_keys = frozenset({"probes", "sinks"})
    probes: list[ProbeEntry] = Field(default_factory=list)
    sinks: list[SinkEntry] = Field(default_factory=list)


class OTLPSection(_Strict):
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, description="seconds")
    interval: float | None = Field(default=None, gt=0, description="seconds")


class CompatSection(_Strict):
    enabled: bool = True
    # Series each tuple metric (flow, packetloss, tcpretrans) keeps; the rest add to one overflow series.
    max_tuple_series: int = Field(default=DEFAULT_MAX_TUPLE_SERIES, ge=1, le=1_000_000, alias="maxTupleSeries")


class BpfStatsSection(_Strict):
    enabled: bool = False


class ReloadSection(_Strict):
    """How a running agent takes a new config (``reload.py``): the file watched, SIGHUP always,
    ``POST /-/reload`` on the HTTP address only when asked for."""

    watch: bool = True
    http: bool = False
    debounce: float = Field(default=0.5, gt=0, le=60, description="seconds of quiet before a reload")


DEFAULT_EVENT_SOCKET = "/run/otel-kubeskoop/events.sock"


class EventStreamSection(_Strict):
    """The live event stream for local clients (``otel-kubeskoop watch``, ``top``)."""

    enabled: bool = True
    path: str = DEFAULT_EVENT_SOCKET
    max_clients: int = Field(default=8, alias="maxClients", ge=1, le=64)
    client_queue: int = Field(default=4096, alias="clientQueue", ge=16, le=1_000_000)


class FileConfig(_Strict):
    upstream_keys = frozenset({"debugMode", "port", "address", "enableController", "controllerAddr", "metrics", "event"})
    debug_mode: bool = Field(default=False, alias="debugMode")
    port: int | None = Field(default=None, ge=0, le=65535)
    address: str | None = None
    enable_controller: bool = Field(default=False, alias="enableController")
    controller_addr: str | None = Field(default=None, alias="controllerAddr")
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    event: EventSection = Field(default_factory=EventSection)
    otlp: OTLPSection = Field(default_factory=OTLPSection)
    compat: CompatSection = Field(default_factory=CompatSection)
    bpf_stats: BpfStatsSection = Field(default_factory=BpfStatsSection, alias="bpfStats")
    reload: ReloadSection = Field(default_factory=ReloadSection)
    event_stream: EventStreamSection = Field(default_factory=EventStreamSection, alias="eventStream")
    node_name: str | None = Field(default=None, alias="nodeName")
    cluster_name: str | None = Field(default=None, alias="clusterName")
    proc_root: str = Field(default="/proc", alias="procRoot")
    netns_dir: str = Field(default="/run/netns", alias="netnsDir")
    cgroup_root: str = Field(default="/sys/fs/cgroup", alias="cgroupRoot")
    sys_root: str = Field(default="/sys", alias="sysRoot")
    shutdown_timeout: float = Field(default=DEFAULT_SHUTDOWN_TIMEOUT_S, gt=0, le=3600, alias="shutdownTimeout",
                                    description="seconds")


@dataclass(frozen=True)
class ProbeConfig:
    name: str
    kind: Kind
    args: BaseModel


@dataclass(frozen=True)
class SinkConfig:
    name: str
    path: str | None = None  # file sink
    addr: str | None = None  # loki sink


@dataclass(frozen=True)
class OTLPSettings:
    """Resolved OTLP export settings; ``endpoint`` None means "let the exporter read the env"."""

    enabled: bool
    protocol: str
    endpoint: str | None
    headers: Mapping[str, str]
    timeout: float  # seconds, metrics
    logs_timeout: float  # seconds, events


@dataclass(frozen=True)
class Config:
    source: str
    raw: FileConfig
    probes: tuple[ProbeConfig, ...]
    sinks: tuple[SinkConfig, ...]
    interval: float
    node_name: str
    cluster_name: str | None
    otlp: OTLPSettings
    address: str | None  # None: no HTTP server
    additional_labels: tuple[tuple[str, str], ...] = field(default=())
    ignored: tuple[str, ...] = ()  # key paths upstream ignores, each with what it probably meant

    @property
    def warning(self) -> str | None:
        """The one warning naming every ignored key, or None."""
        if not self.ignored:
            return None
        return f"{self.source}: ignored, as upstream KubeSkoop ignores them: {'; '.join(self.ignored)}"

    @property
    def debug(self) -> bool:
        return self.raw.debug_mode

    def probe_names(self, kind: Kind) -> list[str]:
        return [p.name for p in self.probes if p.kind is kind]

    @property
    def shutdown_timeout(self) -> float:
        return self.raw.shutdown_timeout


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# Field names in pydantic's error loc are Python names; show the YAML spelling instead. Also
# returns the model the last key was looked up in.
def _yaml_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], type[BaseModel]]:
    out: list[Any] = []
    current: Any = model
    container = model
    for part in loc:
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            container = current
            info = current.model_fields.get(part) or next(
                (i for i in current.model_fields.values() if i.alias == part), None)
            out.append(info.alias if info is not None and info.alias else part)
            ann = info.annotation if info is not None else None
            current = ann
            args = getattr(ann, "__args__", ())
            for a in args:
                if isinstance(a, type) and issubclass(a, BaseModel):
                    current = a
        else:
            out.append(part)
    return tuple(out), container


def _pydantic_problems(exc: ValidationError, prefix: str, model: type[BaseModel]) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc, container = _yaml_loc(model, tuple(err["loc"]))
        path = _path(loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = sorted(f.alias or name for name, f in container.model_fields.items())
            meant = near(str(loc[-1]), allowed)
            msg = "unknown key " + (f"(did you mean {meant!r}?)" if meant else f"(known keys: {', '.join(allowed)})")
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg}, got {err['input']!r}"
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        problems.append((full, msg))
    return problems


def _validate_args(probe: str, spec_args: type[BaseModel], given: Mapping[str, Any], prefix: str,
                   ignored: list[str]) -> tuple[BaseModel | None, list[tuple[str, str]]]:
    """Validate a probe's ``args``. Keys match case-insensitively and ``null`` means "not set", as
    with upstream's mapstructure. An unknown key is ignored (noted in ``ignored``), as upstream does,
    unless it is a near miss of one of our own arguments."""
    by_lower = {}
    for name, info in spec_args.model_fields.items():
        by_lower[(info.alias or name).lower()] = info.alias or name
        by_lower[name.lower()] = info.alias or name
    upstream = UPSTREAM_ARGS.get(probe, ())
    own = sorted({info.alias or n for n, info in spec_args.model_fields.items()} - set(upstream))
    mapped: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in given.items():
        canon = by_lower.get(str(key).lower())
        if canon is None:
            meant = near(str(key), own)
            if meant is not None:
                problems.append((f"{prefix}.{key}", f"unknown argument (did you mean {meant!r}?)"))
            else:
                ignored.append(ignored_note(f"{prefix}.{key}", str(key), upstream))
            continue
        if value is not None:
            mapped[canon] = value
    if problems:
        return None, problems
    try:
        return spec_args.model_validate(mapped), []
    except ValidationError as exc:
        return None, _pydantic_problems(exc, prefix, spec_args)


def _probes(fc: FileConfig, ignored: list[str]) -> tuple[list[ProbeConfig], list[tuple[str, str]]]:
    out: list[ProbeConfig] = []
    problems: list[tuple[str, str]] = []
    for section, kind in (("metrics", Kind.METRICS), ("event", Kind.EVENTS)):
        entries = getattr(fc, section).probes
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            where = f"{section}.probes[{i}]"
            if entry.name in seen:
                problems.append((f"{where}.name", f"probe {entry.name!r} is listed twice"))
                continue
            seen.add(entry.name)
            if entry.name in REMOVED_PROBES:
                ignored.append(f"{where} (probe {entry.name!r}: {REMOVED_PROBES[entry.name]})")
                continue
            spec = REGISTRY.get(entry.name)
            if spec is None:
                known = sorted(n for n, s in REGISTRY.items() if kind in s.kinds)
                problems.append((f"{where}.name", f"unknown {kind.value} probe {entry.name!r} (known: {', '.join(known)})"))
                continue
            if kind not in spec.kinds:
                problems.append((f"{where}.name", f"probe {entry.name!r} has no {kind.value} (it provides: {', '.join(k.value for k in spec.kinds)})"))
                continue
            args, arg_problems = _validate_args(entry.name, spec.args, entry.args or {}, f"{where}.args", ignored)
            problems.extend(arg_problems)
            if args is not None:
                out.append(ProbeConfig(entry.name, kind, args))
    return out, problems


def _sinks(fc: FileConfig, ignored: list[str]) -> tuple[list[SinkConfig], list[tuple[str, str]]]:
    out: list[SinkConfig] = []
    problems: list[tuple[str, str]] = []
    required = {"file": "path", "loki": "addr"}
    for i, sink in enumerate(fc.event.sinks):
        if sink.name not in SINKS:
            problems.append((f"event.sinks[{i}].name", f"unknown sink {sink.name!r} (known: {', '.join(SINKS)})"))
            continue
        where = f"event.sinks[{i}].args"
        args = dict(sink.args or {})
        need = required.get(sink.name)
        allowed = {need} if need else set()
        for key in args:
            if key not in allowed:  # upstream reads only its sink's own key
                ignored.append(ignored_note(f"{where}.{key}", str(key), allowed))
        if need:
            value = args.get(need)
            if not isinstance(value, str) or not value:
                problems.append((f"{where}.{need}", f"sink {sink.name!r} needs a non-empty string {need!r}"))
                continue
        out.append(SinkConfig(sink.name, path=args.get("path"), addr=args.get("addr")))
    return out, problems


def _interval(fc: FileConfig, environ: Mapping[str, str]) -> tuple[float, list[tuple[str, str]]]:
    if fc.otlp.interval is not None:
        if fc.otlp.interval < MIN_INTERVAL_S:
            return DEFAULT_INTERVAL_S, [("otlp.interval", f"at least {MIN_INTERVAL_S:g} s, got {fc.otlp.interval!r}")]
        return fc.otlp.interval, []
    raw = environ.get(env.OTEL_METRIC_EXPORT_INTERVAL)
    if raw:
        try:
            ms = float(raw)
            if not ms >= MIN_INTERVAL_S * 1000:
                raise ValueError
            return ms / 1000.0, []
        except ValueError:
            return DEFAULT_INTERVAL_S, [("", f"environment {env.OTEL_METRIC_EXPORT_INTERVAL}={raw!r}: expected a number "
                                             f"of milliseconds, at least {MIN_INTERVAL_S * 1000:g}")]
    return DEFAULT_INTERVAL_S, []


def _otlp(fc: FileConfig, environ: Mapping[str, str]) -> tuple[OTLPSettings, list[tuple[str, str]]]:
    problems = []
    protocol = fc.otlp.protocol
    if protocol is None:
        protocol = (environ.get(env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL)
                    or environ.get(env.OTEL_EXPORTER_OTLP_PROTOCOL) or "http/protobuf").strip()
        if protocol not in ("http/protobuf", "grpc"):
            problems.append(("", f"environment OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: expected 'http/protobuf' or 'grpc' (http/json is not available in Python)"))
            protocol = "http/protobuf"
    env_endpoint = any(environ.get(v) for v in (
        env.OTEL_EXPORTER_OTLP_ENDPOINT, env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT))
    enabled = bool(fc.otlp.endpoint) or env_endpoint
    if environ.get(env.OTEL_SDK_DISABLED, "").strip().lower() == "true":
        enabled = False
    why = config_otlp.endpoint_problem(fc.otlp.endpoint) if fc.otlp.endpoint else None
    if why:
        problems.append(("otlp.endpoint", f"{fc.otlp.endpoint!r}: {why}"))
    timeouts = []
    for signal in config_otlp.SIGNALS:
        timeout, timeout_problems = config_otlp.timeout_s(environ, signal)
        timeouts.append(fc.otlp.timeout if fc.otlp.timeout is not None else timeout)
        problems += [p for p in timeout_problems if p not in problems]
    if enabled:
        problems += config_otlp.environment_problems(environ, fc.otlp.endpoint)
    return OTLPSettings(enabled, protocol, fc.otlp.endpoint, dict(fc.otlp.headers), *timeouts), problems


def _node_name(fc: FileConfig, environ: Mapping[str, str]) -> str:
    return (fc.node_name or environ.get(env.NODE_NAME) or environ.get(env.INSPECTOR_NODENAME)
            or socket.gethostname())


def _address(fc: FileConfig) -> tuple[str | None, list[tuple[str, str]]]:
    if fc.address is not None:
        addr = fc.address.strip()
        if addr == "":
            return None, []
        if addr.startswith("unix://"):
            return addr, [] if len(addr) > len("unix://") else [("address", "unix:// needs a socket path")]
        hostport = addr.removeprefix("tcp://")
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            return None, [("address", f"expected '[tcp://]host:port', ':port' or 'unix:///path', got {fc.address!r}")]
        return hostport, []
    if fc.port is not None:
        return f":{fc.port}", []
    return DEFAULT_ADDRESS, []


def _where_problems(sinks: list[SinkConfig], address: str | None) -> list[tuple[str, str]]:
    """What would fail at start on this machine: a file sink's directory, an address's host."""
    problems = []
    for i, sink in enumerate(sinks):
        folder = os.path.dirname(os.path.abspath(sink.path)) if sink.path else None
        if folder and not os.path.isdir(folder):
            problems.append((f"event.sinks[{i}].args.path", f"{sink.path!r}: directory {folder!r} does not exist"))
    if address and not address.startswith("unix://"):
        host = address.rpartition(":")[0].strip("[]")
        if host:
            try:
                socket.getaddrinfo(host, None)
            except (OSError, UnicodeError) as exc:
                problems.append(("address", f"{address!r}: host {host!r} does not resolve ({exc})"))
    return problems


def _additional_labels(fc: FileConfig) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(s.split("=", 1)) for s in fc.metrics.additional_labels)  # type: ignore[misc]


def parse(data: Any, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    """Validate an already-loaded YAML document. Raises :class:`ConfigError` listing every problem."""
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("", f"expected a mapping at the top level, got {type(data).__name__}")])
    ignored: list[str] = []
    try:
        fc = FileConfig.model_validate(tolerate(data, FileConfig, "", ignored))
    except ValidationError as exc:
        raise ConfigError(source, _pydantic_problems(exc, "", FileConfig)) from None
    probes, problems = _probes(fc, ignored)
    sinks, sink_problems = _sinks(fc, ignored)
    interval, interval_problems = _interval(fc, environ)
    otlp, otlp_problems = _otlp(fc, environ)
    address, address_problems = _address(fc)
    problems += sink_problems + interval_problems + otlp_problems + address_problems
    problems += _where_problems(sinks, address)
    if problems:
        raise ConfigError(source, problems)
    return Config(
        source=source,
        raw=fc,
        probes=tuple(probes),
        sinks=tuple(sinks),
        interval=interval,
        node_name=_node_name(fc, environ),
        cluster_name=fc.cluster_name,
        otlp=otlp,
        address=address,
        additional_labels=_additional_labels(fc),
        ignored=tuple(ignored),
    )


def load(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file."""
    return loads(read(path), path, environ)


def read(path: str) -> bytes:
    """The bytes of a config file; a :class:`ConfigError` when it cannot be read."""
    data, problems = read_file(path)
    if data is None:
        raise ConfigError(path, problems)
    return data


def loads(data: bytes, path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a config file's bytes (``path`` names it in errors)."""
    document, problems = parse_document(data)
    if problems:
        raise ConfigError(path, problems)
    return parse(document, path, environ)
