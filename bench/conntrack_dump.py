# SPDX-License-Identifier: Apache-2.0
"""The conntrack table dump (``dumpTables``) at 100,000 entries: what one collection costs.

One namespace made here holds ENTRIES conntrack entries, inserted through ctnetlink
(``tests/privileged/probes/conntrackutil.insert_entries``, what ``conntrack -I`` does): two in
three TCP (established), one in three UDP, from 100 source addresses to ten destinations, half
of them source-NATed to one address. For each measurement, the median of REPEAT runs (the
variants alternating, so that other work on the machine weighs on each alike) of thread CPU time
(user + system: the kernel's walk of the table and the formatting of each entry are done in the
reading thread's ``recv`` calls) and wall time:

- read: the dump read through (``read_table``) and not decoded: the kernel's part and the copies;
- read + decode: what the probe does per table (``TableSummary.add`` on each datagram);
- decode: the same datagrams decoded again from memory, and per entry the common layout's
  one-step check (``_common_entry``) against the general walk (``_entry``);
- probe: the probe's whole collection over the host and this namespace, with ``dumpTables`` and
  without (the counters only), and with ``maxEntries: 10000`` (the cap cutting the dump short);
- addresses: reading one namespace's addresses (``/proc/<pid>/net/fib_trie``), which the probe
  does for every namespace per collection when a table has entries.

Also: the peak memory of one dump and decode (tracemalloc), and the decode agreeing with the
entries made. Results go to bench/results/conntrack_dump.json. Run as root, under the
privileged-test lock (it makes a namespace and 100,000 conntrack entries, removed at the end).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tcpsummary import interleaved  # noqa: E402
from pyroute2.netlink import NETLINK_NETFILTER  # noqa: E402

from otel_kubeskoop.netlink.conntrack import table as nl  # noqa: E402
from otel_kubeskoop.netlink.core import iter_messages  # noqa: E402
from otel_kubeskoop.probe import Cycle, ProbeContext  # noqa: E402
from otel_kubeskoop.probes import conntrack  # noqa: E402
from otel_kubeskoop.procfs.net_addresses import read_addresses  # noqa: E402
from otel_kubeskoop.topology.netns_discovery import NetnsDiscovery  # noqa: E402
from tests.privileged.netnsutil import netns  # noqa: E402
from tests.privileged.probes.conntrackutil import TRANSLATED, insert_entries  # noqa: E402
from tests.privileged.probes.netlinkutil import netlink_socket  # noqa: E402

ENTRIES = 100_000
SOURCES = 100
REPEAT = 7
OUT = Path(__file__).resolve().parent / "results" / "conntrack_dump.json"


def ms(pair: tuple[float, float]) -> dict[str, float]:
    return {"cpu_ms": round(pair[0] * 1e3, 2), "wall_ms": round(pair[1] * 1e3, 2)}


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark makes a namespace and conntrack entries")
    with netns() as ns:
        began = time.perf_counter()
        insert_entries(ns, ENTRIES, sources=SOURCES)
        insert_seconds = time.perf_counter() - began
        sleeper = ns.sleeper()  # a process, so that the agent's scan sees the namespace
        sock = netlink_socket(ns, NETLINK_NETFILTER)
        seq = iter(range(2, 10_000_000, 2))

        def read_only() -> list[bytes]:
            return list(nl.read_table(sock, next(seq)))

        def read_decode() -> nl.TableSummary:
            summary = nl.TableSummary()
            for datagram in nl.read_table(sock, next(seq)):
                summary.add(datagram)
            return summary

        datagrams = read_only()
        summary = read_decode()
        assert summary.entries == ENTRIES, summary.entries
        sources = summary.sources()
        assert sum(sources.values()) == ENTRIES and len({s for s, _p, _st in sources}) == SOURCES
        assert sum(n for (_s, p, st), n in sources.items() if p == socket.IPPROTO_TCP and st == "established") \
            == ENTRIES - ENTRIES // 3
        snat = summary.snat_ports()
        assert sum(snat.values()) == ENTRIES // 2 and {t for _p, t, _d, _port in snat} == {TRANSLATED}, snat

        def decode() -> None:
            s = nl.TableSummary()
            for datagram in datagrams:
                s.add(datagram)

        spans = [(d, m.start + 4, m.end) for d in datagrams for m in iter_messages(d) if m.type == 0x100]
        assert all(nl._common_entry(d, a, b) == nl._entry(d, a, b) for d, a, b in spans[:2000])

        def common() -> None:
            for d, a, b in spans:
                nl._common_entry(d, a, b)

        def general() -> None:
            for d, a, b in spans:
                nl._entry(d, a, b)

        read, both, decoded = interleaved([read_only, read_decode, decode], REPEAT)
        (common_cpu, _), (general_cpu, _) = interleaved([common, general], 3)
        tracemalloc.start()
        read_decode()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        with NetnsDiscovery() as discovery:
            scanned = discovery.scan()
            handle = scanned[ns.inode]
            host = next(h for h in scanned.values() if h.is_host)
            cycle = Cycle.of({host.inode: host, ns.inode: handle})

            def probe(**args):
                ctx = ProbeContext("conntrack", cycle=cycle)
                p = conntrack.ConntrackProbe(conntrack.ConntrackArgs(**args), ctx)
                p.start()

                def run():
                    samples = p.collect()
                    assert not ctx.errors, ctx.errors
                    return samples

                return p, run

            counters, run_counters = probe()
            dumping, run_dump = probe(dumpTables=True)
            capped, run_capped = probe(dumpTables=True, maxEntries=10_000)
            for run in (run_counters, run_dump, run_capped):
                run()  # sockets opened before timing
            out = run_dump()
            per_pod = sum(s.value for s in out if s.instrument.name == "kubeskoop.conntrack.source.entries")
            assert per_pod == ENTRIES, per_pod
            cut = run_capped()
            skipped = next(s.value for s in cut if s.instrument.name == "kubeskoop.conntrack.dump.skipped"
                           and s.netns == ns.inode)
            kept = sum(s.value for s in cut if s.instrument.name == "kubeskoop.conntrack.source.entries")
            assert kept >= 10_000 and kept + skipped == ENTRIES, (kept, skipped)
            p_counters, p_dump, p_capped = interleaved([run_counters, run_dump, run_capped], REPEAT)
            for p in (counters, dumping, capped):
                p.stop()
            (addr_cpu, _), = interleaved([lambda: read_addresses(handle)], 51)
        sock.close()
        sleeper.kill()

    per_entry_us = both[0] / ENTRIES * 1e6
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"kernel": platform.release(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "repeat": REPEAT,
        "entries": ENTRIES,
        "insert_seconds": round(insert_seconds, 1),
        "bytes": sum(len(d) for d in datagrams),
        "datagrams": len(datagrams),
        "read": ms(read),
        "read_decode": ms(both),
        "decode": ms(decoded),
        "per_entry_us": {"read_decode_cpu": round(per_entry_us, 2),
                         "common_layout": round(common_cpu / len(spans) * 1e6, 2),
                         "general_walk": round(general_cpu / len(spans) * 1e6, 2)},
        "peak_memory_mib": round(peak / 2**20, 2),
        "probe_collect": {"counters_only": ms(p_counters), "dump_tables": ms(p_dump),
                          "dump_tables_max_entries_10000": ms(p_capped)},
        "capped": {"read": kept, "skipped": skipped},
        "namespace_addresses_us": round(addr_cpu * 1e6, 1),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{ENTRIES} conntrack entries in one namespace ({result['bytes']} bytes in {len(datagrams)} datagrams), "
          f"median of {REPEAT}:")
    print(f"  read only:        {read[0] * 1e3:7.1f} ms CPU {read[1] * 1e3:7.1f} ms wall")
    print(f"  read + decode:    {both[0] * 1e3:7.1f} ms CPU {both[1] * 1e3:7.1f} ms wall ({per_entry_us:.2f} us/entry)")
    print(f"  decode only:      {decoded[0] * 1e3:7.1f} ms CPU")
    print(f"  per entry: common layout {result['per_entry_us']['common_layout']} us, "
          f"general walk {result['per_entry_us']['general_walk']} us")
    print(f"  peak memory of one dump + decode: {result['peak_memory_mib']} MiB")
    print(f"  probe collect: counters only {p_counters[0] * 1e3:.1f} ms CPU, dumpTables {p_dump[0] * 1e3:.1f} ms CPU"
          f" ({p_dump[1] * 1e3:.1f} ms wall), maxEntries 10000 {p_capped[0] * 1e3:.1f} ms CPU "
          f"(read {kept}, skipped {skipped})")
    print(f"  one namespace's addresses: {addr_cpu * 1e6:.0f} us CPU")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
