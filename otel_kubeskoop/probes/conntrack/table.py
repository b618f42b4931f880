# SPDX-License-Identifier: Apache-2.0
"""conntrack entries per pod and SNAT port use, from a bounded dump of the conntrack tables
(``dumpTables``; otel_kubeskoop/probes/conntrack/__init__.py runs it after the counters).
docs/conntrack.md says what each value means and what it costs.

- Which tables: every namespace whose counters show entries, the node's first, then the fullest.
- Per pod: an entry counts for the namespace holding its original source address (every
  namespace's addresses, read once per collection); when no namespace or more than one holds it,
  for the namespace whose table holds it, which also wins when it holds the address itself.
- SNAT: per table, (protocol, translated source, destination, destination port) keys that a
  source-NATed entry uses, with the ports in use (otel_kubeskoop/netlink/conntrack/table.py); the
  ``maxSnatSeries`` busiest are reported and the rest counted.
- Bounds: ``maxEntries`` entries per collection over all tables, checked per datagram; a dump cut
  short or failed is abandoned by discarding its socket, and the entries it left are counted per
  table (``kubeskoop.conntrack.dump.skipped``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

from otel_kubeskoop.netlink.conntrack.table import TableSummary, read_table
from otel_kubeskoop.netlink.core import DecodeError
from otel_kubeskoop.netlink.sockets import NetnsSockets
from otel_kubeskoop.probe import ProbeContext, Sample
from otel_kubeskoop.probes._decode import transport
from otel_kubeskoop.procfs import ParseError
from otel_kubeskoop.procfs.net_addresses import read_addresses
from otel_kubeskoop.topology.netns import Netns, NetnsGone
from otel_kubeskoop.vocabulary import attributes as A
from otel_kubeskoop.vocabulary.instruments import G, U, InstrumentSpec

log = logging.getLogger(__name__)

CONNTRACK_STATE = "kubeskoop.conntrack.state"  # the conntrack TCP/SCTP state: established, time_wait

_SNAT = (A.NETWORK_TRANSPORT, A.SOURCE_ADDRESS, A.DESTINATION_ADDRESS, A.DESTINATION_PORT)
SOURCE_ENTRIES = InstrumentSpec(
    "kubeskoop.conntrack.source.entries", U, "{entry}",
    "Conntrack entries whose original source address is the pod's (the namespace's), in every table "
    "dumped (the node's and any namespace's own), by protocol and TCP/SCTP state (dumpTables)",
    (A.NETWORK_TRANSPORT, CONNTRACK_STATE), key="source_entries")
SNAT_PORTS = InstrumentSpec(
    "kubeskoop.conntrack.snat.ports", U, "{port}",
    "Source ports of the translated source address (source.address) in use towards one destination "
    "address and port, in the table of the namespace that translates (dumpTables)", _SNAT, key="snat_ports")
SNAT_UTILIZATION = InstrumentSpec(
    "kubeskoop.conntrack.snat.utilization", G, "1",
    "kubeskoop.conntrack.snat.ports as a share of snatPortRange, the source ports NAT picks from "
    "(1 = exhausted: new connections to that destination fail)", _SNAT, key="snat_utilization")
SNAT_OMITTED = InstrumentSpec(
    "kubeskoop.conntrack.snat.omitted", G, "{destination}",
    "(translated source, destination) pairs of the table not reported because of maxSnatSeries, each "
    "using fewer ports than any reported", key="snat_omitted")
DUMP_SKIPPED = InstrumentSpec(
    "kubeskoop.conntrack.dump.skipped", G, "{entry}",
    "Entries of the namespace's table not read in the last collection (over maxEntries, or the dump "
    "failed): the per-pod and SNAT values of that table leave them out", key="dump_skipped")
INSTRUMENTS = (SOURCE_ENTRIES, SNAT_PORTS, SNAT_UTILIZATION, SNAT_OMITTED, DUMP_SKIPPED)

Addresses = Mapping[int, frozenset[str]]  # namespace inode -> its addresses


def namespace_addresses(namespaces: Mapping[int, Netns], ctx: ProbeContext) -> Addresses:
    """Every namespace's own addresses; a namespace that went away has none, an unreadable one
    is reported."""
    out: dict[int, frozenset[str]] = {}
    for inode, ns in namespaces.items():
        try:
            out[inode] = frozenset(read_addresses(ns))
        except NetnsGone as exc:
            log.debug("namespace %d went away: %s", inode, exc)
        except (OSError, ParseError) as exc:
            ctx.report(exc)
    return out


def owners(addresses: Addresses) -> Callable[[int, str], int]:
    """``owner(table, source)``: the namespace an entry of ``table`` with original source
    ``source`` counts for (see the module docstring)."""
    holders: defaultdict[str, list[int]] = defaultdict(list)
    for inode, held in addresses.items():
        for address in held:
            holders[address].append(inode)
    empty: frozenset[str] = frozenset()

    def owner(table: int, source: str) -> int:
        if source in addresses.get(table, empty):
            return table
        found = holders.get(source)
        return found[0] if found is not None and len(found) == 1 else table

    return owner


class TableDump:
    """One collection's dump of the tables, within ``max_entries`` in total."""

    def __init__(self, max_entries: int, ports: tuple[int, int], max_snat_series: int) -> None:
        self.max_entries = max_entries
        self.ports = ports
        self.max_snat_series = max_snat_series

    def collect(self, ctx: ProbeContext, sockets: NetnsSockets, counts: Mapping[int, int],
                next_seq: Callable[[], int]) -> list[Sample]:
        """Samples of every table with entries (``counts``: namespace -> entries, from the
        counters), read through ``sockets`` (a socket whose dump was cut or failed is discarded)."""
        namespaces = ctx.cycle.namespaces
        tables = sorted((inode for inode, n in counts.items() if n > 0),
                        key=lambda inode: (not namespaces[inode].is_host, -counts[inode]))
        if not tables:
            return []
        addresses = namespace_addresses(namespaces, ctx)
        owner = owners(addresses)
        by_owner: Counter[tuple[int, int, str | None]] = Counter()
        out: list[Sample] = []
        budget = self.max_entries
        for table in tables:
            sock = sockets.get(table)
            summary = TableSummary(addresses.get(table, ()), self.ports)
            complete = False
            if budget > 0 and sock is not None:
                try:
                    for datagram in read_table(sock, next_seq()):
                        summary.add(datagram)
                        if summary.entries >= budget:
                            break
                    else:
                        complete = True
                except (OSError, DecodeError) as exc:
                    ctx.report(exc)
                    summary = TableSummary()
                if not complete:
                    sockets.discard(table)  # the rest of the dump is still queued on it
            budget -= summary.entries
            skipped = 0 if complete else max(counts[table] - summary.entries, 0)
            out.append(Sample(DUMP_SKIPPED, skipped, table))
            for (source, protocol, state), n in summary.sources().items():
                by_owner[(owner(table, source), protocol, state)] += n
            out += self._snat(table, summary)
        for (inode, protocol, state), n in by_owner.items():
            attrs: tuple[tuple[str, str | int], ...] = ((A.NETWORK_TRANSPORT, transport(protocol)),)
            if state is not None:
                attrs += ((CONNTRACK_STATE, state),)
            out.append(Sample(SOURCE_ENTRIES, n, inode, attrs))
        return out

    def _snat(self, table: int, summary: TableSummary) -> list[Sample]:
        ranked = sorted(summary.snat_ports().items(), key=lambda item: -item[1])
        size = self.ports[1] - self.ports[0] + 1
        out = [Sample(SNAT_OMITTED, max(len(ranked) - self.max_snat_series, 0), table)]
        for (protocol, translated, dst, dport), ports in ranked[:self.max_snat_series]:
            attrs = ((A.NETWORK_TRANSPORT, transport(protocol)), (A.SOURCE_ADDRESS, translated),
                     (A.DESTINATION_ADDRESS, dst), (A.DESTINATION_PORT, dport))
            out.append(Sample(SNAT_PORTS, ports, table, attrs))
            out.append(Sample(SNAT_UTILIZATION, ports / size, table, attrs))
        return out


def port_range(text: str) -> tuple[int, int]:
    """``"first-last"`` as (first, last); raises ValueError naming what is wrong."""
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise ValueError(f"{text!r} is not a port range like 1024-65535") from None
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"{text!r}: ports go from 1 to 65535, first <= last")
    return lo, hi
