# SPDX-License-Identifier: Apache-2.0
"""BTF read through libbpf (``btf__new``, ``btf__parse``) and our reading of its type records, on
BTF built in the test (no kernel, no clang; libbpf.so.1, which the agent itself loads)."""

from __future__ import annotations

import pytest

from otel_kubeskoop.bpf import btf
from otel_kubeskoop.bpf.btf import BTFError, Kind
from tests.unit.bpf.btfbuild import BTFBuilder


def kernel_like() -> BTFBuilder:
    """A few types shaped like the kernel's: the enums we read by name, a struct, a tracepoint."""
    b = BTFBuilder()
    u32 = b.int_type("unsigned int", 4)
    u16 = b.int_type("short unsigned int", 2)
    s32 = b.int_type("int", 4, signed=True)
    b.enum(
        "skb_drop_reason",
        [
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_MAX", 4),
        ],
    )
    b.enum(
        "", [("TCP_ESTABLISHED", 1), ("TCP_SYN_SENT", 2), ("TCP_CLOSE", 7), ("TCP_MAX_STATES", 8)]
    )
    b.enum("sk_rst_reason", [("SK_RST_REASON_NOT_SPECIFIED", 0), ("SK_RST_REASON_NO_SOCKET", 1)])
    hdr = b.struct(
        "event_header",
        16,
        [
            ("ts_ns", b.int_type("long long unsigned int", 8), 0),
            ("netns", u32, 8),
            ("type", u16, 12),
            ("aux", u16, 14),
        ],
    )
    b.typedef("event_header_t", hdr)
    sock = b.struct("sock", 8, [("x", s32, 0)])
    proto = b.func_proto(0, [("", b.ptr(0)), ("", b.ptr(sock))])
    b.typedef("btf_trace_tcp_receive_reset", b.ptr(proto))
    b.func("tcp_reset", b.func_proto(0, [("sk", b.ptr(sock))]))
    return b


@pytest.fixture
def parsed() -> btf.BTF:
    return btf.parse_btf(kernel_like().build(), "test")


def test_enum_values_by_name(parsed: btf.BTF) -> None:
    reasons = btf.skb_drop_reasons(parsed)
    assert reasons[3] == "SKB_DROP_REASON_NO_SOCKET"
    assert reasons[1] == "SKB_CONSUMED"
    assert btf.sk_rst_reasons(parsed) == {
        0: "SK_RST_REASON_NOT_SPECIFIED",
        1: "SK_RST_REASON_NO_SOCKET",
    }


def test_tcp_states_from_the_anonymous_enum_without_the_count(parsed: btf.BTF) -> None:
    assert btf.tcp_states(parsed) == {1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 7: "TCP_CLOSE"}


def test_missing_enum_is_a_key_error(parsed: btf.BTF) -> None:
    with pytest.raises(KeyError, match="no enum 'nope'"):
        parsed.enum_values("nope")
    with pytest.raises(KeyError, match="declares 'NOPE'"):
        parsed.enum_members_containing("NOPE")


def test_repeated_values_keep_the_first_name_and_signed_values_decode() -> None:
    b = BTFBuilder()
    b.enum("e", [("A", 1), ("ALIAS_OF_A", 1), ("NEG", -2)], signed=True)
    b.enum64("big", [("HUGE", 1 << 40), ("SMALL", 5)])
    parsed = btf.parse_btf(b.build())
    assert parsed.enum_values("e") == {1: "A", -2: "NEG"}
    assert parsed.enum_values("big") == {1 << 40: "HUGE", 5: "SMALL"}


def test_forward_declared_enum_is_skipped_for_the_full_one() -> None:
    b = BTFBuilder()
    b.enum("e", [])  # a forward declaration has no members
    b.enum("e", [("ONE", 1)])
    assert btf.parse_btf(b.build()).enum_values("e") == {1: "ONE"}


def test_struct_layout_directly_and_through_a_typedef(parsed: btf.BTF) -> None:
    layout = parsed.struct_layout("event_header")
    assert (layout.size, layout.offsets) == (16, {"ts_ns": 0, "netns": 8, "type": 12, "aux": 14})
    assert parsed.struct_layout("event_header_t").offsets == layout.offsets
    with pytest.raises(KeyError, match="no struct"):
        parsed.struct_layout("nope")


def test_find_by_kind(parsed: btf.BTF) -> None:
    assert parsed.has("btf_trace_tcp_receive_reset", Kind.TYPEDEF)
    assert not parsed.has("btf_trace_tcp_receive_reset", Kind.STRUCT)
    assert not parsed.has("btf_trace_tcp", Kind.TYPEDEF)  # a prefix of a name is not the name
    found = parsed.find("tcp_reset", Kind.FUNC)
    assert found is not None and parsed.kind(found) == Kind.FUNC
    assert parsed.name(found) == "tcp_reset" and parsed.name(0) == "void"


def test_datasec_variables_and_their_integer_encoding() -> None:
    b = BTFBuilder()
    u32 = b.int_type("unsigned int", 4)
    boolean = b.int_type("_Bool", 1)
    s64 = b.int_type("long", 8, signed=True)
    targ_netns = b.var("targ_netns", b.const(b.volatile(u32)))
    targ_emit = b.var("targ_emit", b.const(b.volatile(boolean)))
    targ_min = b.var("targ_min", b.typedef("s64_t", s64))
    b.datasec(".rodata", 16, [(targ_netns, 0, 4), (targ_emit, 4, 1), (targ_min, 8, 8)])
    parsed = btf.parse_btf(b.build())
    assert parsed.datasec(".rodata") == {
        "targ_netns": (0, 4),
        "targ_emit": (4, 1),
        "targ_min": (8, 8),
    }
    assert parsed.int_encoding(parsed.var_type("targ_netns")) == (4, False)
    assert parsed.int_encoding(parsed.var_type("targ_min")) == (8, True)
    with pytest.raises(KeyError):
        parsed.datasec(".data")


def test_big_endian_btf_reads_the_same() -> None:
    b = BTFBuilder(endian=">")
    b.enum("e", [("ONE", 1), ("TWO", 2)])
    assert btf.parse_btf(b.build()).enum_values("e") == {1: "ONE", 2: "TWO"}


@pytest.mark.parametrize(
    "blob",
    [b"\x00" * 8, b"\x00" * 40],
    ids=["short", "bad magic"],
)
def test_malformed_headers_are_refused(blob: bytes) -> None:
    with pytest.raises(BTFError, match="test: libbpf refused the BTF"):
        btf.parse_btf(blob, "test")


def test_unknown_kind_and_truncated_types_are_refused() -> None:
    b = BTFBuilder()
    b.raw_type(25)
    with pytest.raises(BTFError, match="libbpf refused"):
        btf.parse_btf(b.build())
    b = BTFBuilder()
    b.raw_type(Kind.STRUCT, vlen=3)  # says 3 members, has none
    with pytest.raises(BTFError, match="libbpf refused"):
        btf.parse_btf(b.build())


def test_a_btf_file_and_a_missing_one(tmp_path) -> None:
    raw = tmp_path / "vmlinux"
    raw.write_bytes(kernel_like().build())
    assert btf.read_btf(str(raw)).enum_values("sk_rst_reason")[1] == "SK_RST_REASON_NO_SOCKET"
    with pytest.raises(FileNotFoundError):
        btf.read_btf(str(tmp_path / "missing"))
