# SPDX-License-Identifier: Apache-2.0
"""Command line: ``run``, ``probes``, ``doctor``, ``cleanup``, ``watch``, ``top``, ``config validate``."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

import click

from otel_kubeskoop import __version__
from otel_kubeskoop import environment_variables as env
from otel_kubeskoop.config import CONFIG_ERROR, Config, ConfigError, load, parse
from otel_kubeskoop.top import COLUMNS as TOP_COLUMNS

log = logging.getLogger("otel_kubeskoop")

_CONTROL_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not debug:  # the SDK's per-retry warnings are ours to summarise
        logging.getLogger("opentelemetry").setLevel(logging.ERROR)


def _load(path: str | None) -> Config:
    """The config at ``path``, or ``$KUBESKOOP_CONFIG``, or the built-in default probe set."""
    path = path or os.environ.get(env.KUBESKOOP_CONFIG)
    try:
        if path:
            return load(path)
        from otel_kubeskoop.probes import ALL_PROBES

        return parse({"metrics": {"probes": [{"name": s.name} for s in ALL_PROBES if s.default_enabled]}},
                     "<built-in defaults>")
    except ConfigError as exc:
        click.echo(f"error: invalid config\n{exc}", err=True)
        sys.exit(CONFIG_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otel-kubeskoop")
def main() -> None:
    """Per-pod Linux network-stack telemetry as OpenTelemetry metrics and events."""


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="Config file (YAML).")
@click.option("-d", "--debug", is_flag=True, help="Debug logging (same as debugMode: true).")
def run(config_path: str | None, debug: bool) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    # Blocked before any thread exists, so every thread inherits the mask and the kernel hands these
    # signals to the main thread alone, once it unblocks them below. Taken by another thread, a
    # signal leaves the main thread asleep in wait() and its Python handler never runs. One sent
    # during start-up waits, and acts once the agent runs.
    signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
    config = _load(config_path)
    _setup_logging(debug or config.debug)
    if config.warning:
        log.warning(config.warning)
    from otel_kubeskoop.capabilities import lacking

    for line in lacking(p.name for p in config.probes):
        log.warning("%s", line)
    from otel_kubeskoop.agent import Agent
    from otel_kubeskoop.limits import raise_nofile
    from otel_kubeskoop.telemetry.exporters import ExporterError

    raise_nofile()  # before anything opens descriptors; the Agent sizes its namespace cap on it
    try:
        agent = Agent(config)
    except (ExporterError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    log.info("otel-kubeskoop %s on node %s: config %s, interval %gs, OTLP %s", __version__, config.node_name,
             config.source, config.interval,
             f"{config.otlp.protocol} export on" if config.otlp.enabled else "off (no endpoint configured)")

    def _terminate(signum: int, frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        agent.request_stop()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGHUP, lambda signum, frame: agent.reloader.request("SIGHUP"))  # reload.py
    agent.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)
    agent.wait()
    agent.stop()
    log.info("stopped")


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="Config whose settings (procRoot) apply.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def probes(config_path: str | None, as_json: bool) -> None:
    """List every probe: kind, source, overhead, default, and whether it can run here."""
    from otel_kubeskoop.doctor import probe_availability

    config = _load(config_path)
    _setup_logging(False)
    logging.getLogger("otel_kubeskoop").setLevel(logging.ERROR)
    rows = probe_availability(config)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="otel-kubeskoop probes")
    for col in ("probe", "kinds", "source", "scope", "overhead", "default", "here"):
        table.add_column(col)
    for r in rows:
        here = "[green]yes[/green]" if r["available"] else f"[red]no[/red]: {r['reason']}"
        table.add_row(r["name"], ",".join(r["kinds"]), r["source"], r["scope"],
                      f"{r['overhead']}: {r['overhead_note']}" if r["overhead_note"] else r["overhead"], "yes" if r["default_enabled"] else "no", here)
    Console(width=max(160, Console().width)).print(table)


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="Config to check against.")
def doctor(config_path: str | None) -> None:
    """Check this machine: kernel, BTF, tracefs, capabilities, libbpf, namespaces, OTLP endpoint."""
    from otel_kubeskoop.doctor import run_checks

    config = _load(config_path)
    worst = 0
    for check in run_checks(config):
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[check.verdict]
        click.echo(f"[{mark}] {check.name}: {check.detail}")
        worst = max(worst, {"ok": 0, "warn": 0, "fail": 1}[check.verdict])
    sys.exit(worst)


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="Config whose procRoot and netnsDir apply.")
@click.option("--prestop", is_flag=True,
              help="Also take off what processes of this cgroup (the agent's container) hold: for a preStop hook.")
def cleanup(config_path: str | None, prestop: bool) -> None:
    """Remove the TC filters and clsact qdiscs agents left (killed, or stopped uncleanly)."""
    from otel_kubeskoop.cleanup import cleanup as run_cleanup
    from otel_kubeskoop.cleanup import own_cgroup

    config = _load(config_path)
    _setup_logging(config.debug)
    done = run_cleanup(config.raw.proc_root, config.raw.netns_dir,
                       ignore_cgroup=own_cgroup() if prestop else None)
    click.echo(str(done))
    sys.exit(1 if done.errors else 0)


def _socket_path(config_path: str | None, socket_path: str | None) -> str:
    if socket_path:
        return socket_path
    from otel_kubeskoop.config import DEFAULT_EVENT_SOCKET

    path = config_path or os.environ.get(env.KUBESKOOP_CONFIG)
    return _load(path).raw.event_stream.path if path else DEFAULT_EVENT_SOCKET


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="The agent's config (its eventStream.path).")
@click.option("--socket", "socket_path", help="The agent's event stream socket (default: from the config, else /run/otel-kubeskoop/events.sock).")
@click.option("--netns", help="Only this network namespace: an inode, or a name under /run/netns.")
@click.option("--namespace", help="Only pods of this Kubernetes namespace.")
@click.option("--pod", help="Only this pod (by name).")
@click.option("--probe", help="Only this probe's events (tcpreset, packetloss...).")
@click.option("--type", "type_", help="Only this event type: upstream (TCPRESET_NOSOCK) or ours (the event name, or its last word).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def watch(config_path: str | None, socket_path: str | None, netns: str | None, namespace: str | None,
          pod: str | None, probe: str | None, type_: str | None, output: str) -> None:
    """Follow the running agent's events live, filtered."""
    from otel_kubeskoop.watch import NoAgent, follow, netns_inode, table_row

    filters: dict[str, object] = {k: v for k, v in (("namespace", namespace), ("pod", pod), ("probe", probe),
                                                    ("type", type_)) if v}
    try:
        if netns:
            filters["netns"] = netns_inode(netns)
        for message in follow(_socket_path(config_path, socket_path), {"mode": "events", "filters": filters}):
            if "event" in message:
                record = message["event"]
                click.echo(json.dumps(record, separators=(",", ":")) if output == "json" else "  ".join(table_row(record)))
            elif "lost" in message:
                click.echo(f"# {message['lost']} events lost (this client read too slowly; {message['total_lost']} in all)", err=True)
    except (NoAgent, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        return
    click.echo("error: the agent closed the stream", err=True)
    sys.exit(1)


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="The agent's config (its eventStream.path).")
@click.option("--socket", "socket_path", help="The agent's event stream socket.")
@click.option("--sort", type=click.Choice(list(TOP_COLUMNS)), default="drops", show_default=True,
              help="The column to sort by (the s key moves on).")
def top(config_path: str | None, socket_path: str | None, sort: str) -> None:
    """A live view of the running agent: one row per pod, refreshed every collection."""
    from otel_kubeskoop.top import run_top
    from otel_kubeskoop.watch import NoAgent

    try:
        run_top(_socket_path(config_path, socket_path), sort)
    except NoAgent as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.group("config")
def config_group() -> None:
    """Config file commands."""


@config_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def config_validate(file: str) -> None:
    """Validate FILE; exit 2 with every problem listed if it is invalid."""
    try:
        cfg = load(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(CONFIG_ERROR)
    click.echo(f"{file}: valid ({len(cfg.probes)} probes, interval {cfg.interval:g}s)")
    if cfg.warning:
        click.echo(f"warning: {cfg.warning}")


if __name__ == "__main__":
    main()
