# SPDX-License-Identifier: Apache-2.0
"""The batch path from ring-buffer records to the emitter, without a kernel: records laid out as
one ``struct`` (``bpf/records.py``), the typecount decoder against the per-field ctypes decoding it
replaced, bad records counted as decode errors without stopping the batch, and what the caches
keep: nothing a pod's identity decides, so a relabelled pod is never served stale."""

from __future__ import annotations

import ctypes
import random
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from otel_kubeskoop.bpf.generated import common
from otel_kubeskoop.bpf.generated.tcpreset import TcpresetEvent, TcpresetType
from otel_kubeskoop.bpf.generated.tcpretrans import TcpretransEvent
from otel_kubeskoop.bpf.records import DecodeError, RecordLayout
from otel_kubeskoop.probe import Event, ProbeContext
from otel_kubeskoop.probes import _decode, tcpreset, tcpretrans
from otel_kubeskoop.probes._decode import KernelNames, TupleWords, connection_attributes, emit_records
from otel_kubeskoop.probes._typecount import Typecount, TypecountDecoder
from otel_kubeskoop.telemetry.events import EventEmitter
from tests.eventref import typecount_event
from tests.helpers import MemoryLogExporter, Resources
from tests.otlp_receiver import decode_attributes

NAMES = KernelNames(rst_reasons={2: "SK_RST_REASON_NO_SOCKET", 3: "SK_RST_REASON_TCP_ABORT_ON_CLOSE"},
                    tcp_states={1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 7: "TCP_CLOSE", 12: "TCP_NEW_SYN_RECV"})
OFFSET = 1_700_000_000_000_000_000


def random_record(cls: type[ctypes.Structure], rng: random.Random) -> bytes:
    rec: Any = cls()
    rec.hdr.ts_ns = rng.randrange(2**63)
    rec.hdr.netns = rng.choice([0, 4026531840, 4026532281])
    rec.hdr.type = rng.choice([1, 2, 3, 4, 9])  # 9: no such type
    rec.hdr.aux = rng.choice([0, 1, 2, 7, 12, 99])  # 99: a state this kernel does not name
    t = rec.tuple
    t.family = rng.choice([2, 10, 0, 1])  # 0, 1: not IP
    t.protocol = rng.choice([6, 17, 1, 58, 132, 250])
    raw = socket.inet_pton(socket.AF_INET6, rng.choice(["fd00::1", "::1", "2001:db8::42"]))
    if t.family == 2:
        raw = socket.inet_pton(socket.AF_INET, rng.choice(["10.0.0.1", "127.0.0.1", "192.168.1.9"])) + bytes(12)
    t.saddr[:] = list(raw)
    t.daddr[:] = list(reversed(raw)) if rng.random() < 0.5 else list(raw)
    t.sport, t.dport = rng.randrange(65536), rng.randrange(65536)
    if hasattr(rec, "reason"):
        rec.reason = rng.choice([0xFFFFFFFF, 2, 3, 77])
    return bytes(rec)


def outcome(decode, raw):
    try:
        return decode(raw)
    except DecodeError as exc:
        return f"DecodeError: {exc}"


@pytest.mark.parametrize("table", [tcpreset.TABLE, tcpretrans.TABLE], ids=["tcpreset", "tcpretrans"])
def test_the_typecount_decoder_gives_what_per_field_decoding_gave(table: Typecount) -> None:
    rng = random.Random(7)
    decoder = TypecountDecoder(table, NAMES)
    for _ in range(3000):
        raw = random_record(table.record, rng)
        assert outcome(lambda r: decoder.decode(r, OFFSET), raw) == outcome(
            lambda r: typecount_event(table, r, NAMES, OFFSET), raw)


def test_a_record_layout_unpacks_what_the_ctypes_mirror_reads() -> None:
    rng = random.Random(3)
    for cls in (TcpresetEvent, TcpretransEvent):
        layout = RecordLayout(cls)
        assert layout.size == ctypes.sizeof(cls)
        for _ in range(200):
            raw = bytes(rng.randrange(256) for _ in range(layout.size))
            fields, rec = layout.unpack(raw), cls.from_buffer_copy(raw)
            for name, at in layout.index.items():
                value: Any = rec
                for part in name.split("."):
                    value = getattr(value, part)
                assert fields[at] == (bytes(value) if isinstance(value, ctypes.Array) else value), name
    with pytest.raises(DecodeError, match="record of 63 bytes, expected 64"):
        RecordLayout(TcpresetEvent).unpack(bytes(63))
    with pytest.raises(TypeError, match="not a little-endian mirror"):
        RecordLayout(type("Big", (ctypes.BigEndianStructure,), {"_fields_": [("a", ctypes.c_uint32)]}))


def test_bad_records_are_counted_and_the_rest_of_the_batch_goes_on() -> None:
    emitted: list[Event] = []
    ctx = ProbeContext(name="tcpreset", emit_batch=emitted.extend)
    decoder = TypecountDecoder(tcpreset.TABLE, NAMES)
    good = random_record(TcpresetEvent, random.Random(1))
    rec = TcpresetEvent.from_buffer_copy(good)
    rec.hdr.type = TcpresetType.TCPRESET_NOSOCK
    good = bytes(rec)
    rec.hdr.type = 9
    unknown_type = bytes(rec)

    def decode(raw: bytes) -> Event:
        if raw == b"bug":
            raise KeyError("a decoder bug")  # not a DecodeError: still one record, still counted
        return decoder.decode(raw, 0)

    batch = [good, b"", good[:-1], good + bytes(8), unknown_type, b"bug", good] * 100
    emit_records(decode, batch, ctx, "tcpreset")
    assert len(emitted) == 200 and all(e.name == "kubeskoop.tcpreset.nosock" for e in emitted)
    assert ctx.decode_errors == 500
    assert len(emitted) + ctx.decode_errors == len(batch)


def test_records_are_emitted_in_bounded_chunks_one_by_one_without_a_batch_emitter() -> None:
    chunks: list[int] = []
    ctx = ProbeContext(name="tcpreset", emit_batch=lambda events: chunks.append(len(events)))
    decoder = TypecountDecoder(tcpreset.TABLE, NAMES)
    rec = TcpresetEvent.from_buffer_copy(random_record(TcpresetEvent, random.Random(2)))
    rec.hdr.type = TcpresetType.TCPRESET_RECEIVE
    emit_records(lambda raw: decoder.decode(raw, 0), [bytes(rec)] * 1000, ctx, "tcpreset")
    assert chunks == [256, 256, 256, 232]
    one_by_one: list[Event] = []
    emit_records(lambda raw: decoder.decode(raw, 0), [bytes(rec)] * 3,
                 ProbeContext(name="tcpreset", emit=one_by_one.append), "tcpreset")
    assert len(one_by_one) == 3


def test_tuple_words_stay_right_past_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_decode, "MAX_CACHED_WORDS", 8)
    words = TupleWords(NAMES)
    for i in range(100):
        address = bytes([10, 0, i // 256, i % 256]) + bytes(12)
        t = common.FlowTuple(family=2, protocol=6, sport=i, dport=80)
        t.saddr[:] = list(address)
        t.daddr[:] = list(address)
        got = words.connection(2, 6, address, address, i, 80, 1 + i % 2)
        assert list(got) == connection_attributes(t, NAMES, 1 + i % 2)
        assert len(words._sources) <= 8 and len(words._states) <= 8


def test_a_relabelled_pod_is_never_served_stale() -> None:
    """The emitter resolves each batch's namespaces through the directory, which makes a new
    Resource when a pod's attributes change; the emitter's encoded-resource cache is keyed by the
    Resource object (and holds it, so its id cannot be reused while cached), so the next batch
    carries the new attributes. The decoders' caches hold tuples, states and types only."""
    labels = {"k8s.pod.name": "web-0", "app": "v1"}
    resources = Resources(lambda inode: {"kubeskoop.netns.inode": inode, **labels})
    directory = SimpleNamespace(event_resource=resources.resource)
    mem = MemoryLogExporter()
    emitter = EventEmitter(directory, [mem], [], flush_interval=3600)
    decoder = TypecountDecoder(tcpreset.TABLE, NAMES)
    rec = TcpresetEvent.from_buffer_copy(random_record(TcpresetEvent, random.Random(5)))
    rec.hdr.type, rec.hdr.netns = TcpresetType.TCPRESET_NOSOCK, 4026532281
    ctx = ProbeContext(name="tcpreset", emit_batch=emitter.emit_batch)

    seen = []
    for name, app in (("web-0", "v1"), ("web-0", "v2"), ("web-1", "v2")):
        labels.update({"k8s.pod.name": name, "app": app})
        resources.rebuild(4026532281)  # what the directory does when the pod's metadata changes
        emit_records(lambda raw: decoder.decode(raw, 0), [bytes(rec)] * 3, ctx, "tcpreset")
        emitter.flush()
        (request,) = mem.requests[-1:]
        seen.append([(decode_attributes(rl.resource.attributes)["k8s.pod.name"],
                      decode_attributes(rl.resource.attributes)["app"], len(rl.scope_logs[0].log_records))
                     for rl in request.resource_logs])
    assert seen == [[("web-0", "v1", 3)], [("web-0", "v2", 3)], [("web-1", "v2", 3)]]
    emitter.shutdown()


def test_new_event_is_the_event_the_dataclass_builds() -> None:
    attrs = (("network.type", "ipv4"), ("source.port", 1))
    made = _decode.new_event("kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK", 7, attrs, "body", 42)
    assert made == Event("kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK", 7, attrs, "body", 42)
    assert (made.name, made.upstream_type, made.netns, made.attributes, made.body, made.timestamp_ns) == (
        "kubeskoop.tcpreset.nosock", "TCPRESET_NOSOCK", 7, attrs, "body", 42)
    with pytest.raises(AttributeError):  # still frozen
        made.netns = 8  # type: ignore[misc]
