# SPDX-License-Identifier: Apache-2.0
"""Framing and attribute walking: every length is checked before it is read."""

from __future__ import annotations

import errno
import struct

import pytest
from pyroute2.netlink.diag import inet_diag_msg
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_stats_cpu
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from otel_kubeskoop.netlink import core
from otel_kubeskoop.netlink.core import DecodeError


def nla(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def msg(mtype: int, payload: bytes, flags: int = 0, seq: int = 1) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_messages_are_split_at_aligned_lengths():
    buf = msg(20, b"abc") + msg(3, struct.pack("=i", 0), flags=2, seq=7)
    first, done = core.iter_messages(buf)
    assert (first.type, first.start, first.end) == (20, 16, 19)  # nlmsg_len 19, padded to 20
    assert (done.type, done.flags, done.seq, done.start) == (3, 2, 7, 36)
    assert core.error_code(buf, done) == 0


@pytest.mark.parametrize("buf", [
    b"\x10\x00\x00",  # shorter than a header
    struct.pack("=IHHII", 15, 20, 0, 1, 0),  # nlmsg_len below the header size
    struct.pack("=IHHII", 64, 20, 0, 1, 0) + b"\0" * 8,  # claims more than there is
    msg(20, b"abcd") + b"\x01\x02",  # trailing bytes
])
def test_bad_framing_raises(buf):
    with pytest.raises(DecodeError):
        list(core.iter_messages(buf))


def test_error_message_carries_the_errno():
    buf = msg(2, struct.pack("=i", -errno.EPERM) + b"\0" * 16)
    (m,) = core.iter_messages(buf)
    assert core.error_code(buf, m) == errno.EPERM
    with pytest.raises(DecodeError):
        core.error_code(msg(2, b"\0\0"), next(core.iter_messages(msg(2, b"\0\0"))))


def test_attrs_mask_flags_keep_last_and_check_lengths():
    body = nla(1, b"x") + nla(2 | 0x8000, nla(1, b"yy")) + nla(1, b"zz")
    found = core.attrs(body, 0, len(body))
    assert sorted(found) == [1, 2]
    assert body[found[1][0]:found[1][1]] == b"zz"  # the last occurrence wins
    assert core.find_attr(body, 0, len(body), 1) == (4, 5)  # the first occurrence
    assert core.find_attr(body, 0, len(body), 9) is None
    broken = bytearray(body)
    struct.pack_into("=H", broken, 0, 200)
    with pytest.raises(DecodeError):
        core.attrs(bytes(broken), 0, len(broken))
    with pytest.raises(DecodeError):
        core.find_attr(bytes(broken), 0, len(broken), 2)
    with pytest.raises(DecodeError):
        core.attrs(body + b"\x01\x00", 0, len(body) + 2)  # a header cut short


def test_scalars_check_their_width():
    assert core.scalar(b"\x00\x00\x01\x02", (0, 4), "be32") == 0x0102
    assert core.scalar(b"\x02\x01", (0, 2), "uint16") == 0x0102
    with pytest.raises(DecodeError):
        core.scalar(b"\x00\x01", (0, 2), "be32")
    assert core.string(b"eth0\0\0\0\0", (0, 8)) == "eth0"
    assert core.string(b"lo", (0, 2)) == "lo"  # no terminator


def test_schema_and_layout_come_from_pyroute2():
    stats = core.schema(nfct_stats_cpu)
    assert stats["CTA_STATS_FOUND"] == 2 and stats["CTA_STATS_CHAIN_TOOLONG"] == 15  # enum ctattr_stats_cpu
    assert stats.formats[2] == "be32"
    assert core.schema(tcmsg)["TCA_STATS2"] == 7
    fields, size = core.layout(inet_diag_msg)
    assert size == 72  # sizeof(struct inet_diag_msg)
    assert fields["idiag_rqueue"] == (56, "=I") and fields["idiag_wqueue"] == (60, "=I")
    reader, size = core.field_reader(inet_diag_msg, "idiag_family", "idiag_state", "idiag_rqueue")
    raw = bytes([2, 10]) + b"\0" * 54 + struct.pack("=I", 3) + b"\0" * 12
    assert reader.unpack_from(raw) == (2, 10, 3)
    with pytest.raises(ValueError):
        core.field_reader(inet_diag_msg, "idiag_sport")  # big-endian: not for the hot loop
