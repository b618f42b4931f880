# SPDX-License-Identifier: Apache-2.0
"""Kernel addresses named from /proc/kallsyms lines, including when kptr_restrict hides them."""

from __future__ import annotations

from otel_kubeskoop.bpf.kallsyms import (
    MAX_OFFSET,
    Kallsyms,
    parse_kallsyms,
    read_kallsyms,
    shared_kallsyms,
)

LINES = [
    "ffffffff81000000 T _stext",
    "ffffffff81f28dd0 T nf_hook_slow",
    "ffffffff81f28f00 t nf_hook_slow_list",
    "ffffffff81f29000 D some_data",
    "ffffffff820339c0 T tcp_v4_rcv",
    "ffffffff820339c0 T tcp_v4_rcv_alias",
    "ffffffffc0201000 t nft_do_chain\t[nf_tables]",
    "not a line",
]


def test_parse_keeps_text_symbols_sorted() -> None:
    table = parse_kallsyms("\n".join(LINES))
    assert table.lines == 7  # the malformed line is skipped
    assert table.names == ("_stext", "nf_hook_slow", "nf_hook_slow_list", "tcp_v4_rcv",
                           "nft_do_chain\t[nf_tables]")
    assert table.addresses == tuple(sorted(table.addresses))
    assert parse_kallsyms("\n".join(LINES).encode()) == table


def test_parse_names_every_symbol_even_when_addresses_are_hidden() -> None:
    # What the loader asks before a kprobe: is the function there, whatever kptr_restrict says.
    assert parse_kallsyms("\n".join(LINES)).symbols == {
        "_stext", "nf_hook_slow", "nf_hook_slow_list", "some_data", "tcp_v4_rcv",
        "tcp_v4_rcv_alias", "nft_do_chain"}
    hidden = parse_kallsyms("0000000000000000 T _stext\n0000000000000000 t tcp_v4_rcv\n")
    assert hidden.symbols == {"_stext", "tcp_v4_rcv"} and hidden.addresses == (0,)


def test_read_is_the_whole_file(tmp_path) -> None:
    path = tmp_path / "kallsyms"
    body = "".join(f"{0xffffffff81000000 + 16 * i:016x} T f{i}\n" for i in range(20000))
    path.write_text(body)
    assert read_kallsyms(str(path)) == body.encode()  # larger than one read() of procfs
    assert len(parse_kallsyms(read_kallsyms(str(path))).addresses) == 20000


def test_symbolize() -> None:
    k = Kallsyms(lines=LINES)
    assert k.hidden is None
    assert k.symbolize(0xFFFFFFFF820339C0 + 0x1A2) == "tcp_v4_rcv+0x1a2"
    assert k.symbolize(0xFFFFFFFF81F28DD0) == "nf_hook_slow+0x0"
    assert k.symbolize(0xFFFFFFFF81F29010) == "nf_hook_slow_list+0x110"  # data symbols are skipped
    assert k.symbolize(0xFFFFFFFFC0201000 + 0x3E8) == "nft_do_chain+0x3e8 [nf_tables]"
    assert k.symbolize(0x1000) == "0x1000"  # before the first symbol
    assert k.symbolize(0xFFFFFFFFC0201000 + MAX_OFFSET + 1) == f"{0xFFFFFFFFC0201000 + MAX_OFFSET + 1:#x}"
    assert k.symbolize(0) == ""


def test_kptr_restrict_is_detected_and_addresses_stay_hex() -> None:
    hidden = Kallsyms(lines=["0000000000000000 T _stext", "0000000000000000 T tcp_v4_rcv"])
    assert hidden.symbolize(0xFFFFFFFF820339C0) == "0xffffffff820339c0"
    assert "kptr_restrict" in (hidden.hidden or "")


def test_unreadable_file(tmp_path) -> None:
    k = Kallsyms(path=str(tmp_path / "missing"))
    assert k.symbolize(0xFFFFFFFF820339C0) == "0xffffffff820339c0"
    assert "cannot read" in (k.hidden or "")


def test_read_once_lazily(tmp_path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("\n".join(LINES) + "\n")
    k = Kallsyms(path=str(path))  # nothing read yet
    path.write_text("ffffffff820339c0 T tcp_v4_rcv\n")
    assert k.symbolize(0xFFFFFFFF820339C5) == "tcp_v4_rcv+0x5"
    path.unlink()
    assert k.symbolize(0xFFFFFFFF820339C6) == "tcp_v4_rcv+0x6"


def test_shared_kallsyms_is_read_again_only_when_the_modules_change(tmp_path):
    syms, modules = tmp_path / "kallsyms", tmp_path / "modules"
    syms.write_text("ffffffff81000000 T _stext\nffffffff81f28c30 T tcp_v4_rcv\n")
    modules.write_text("veth 45056 0 - Live 0xffffffffc0a00000\n")
    first = shared_kallsyms(str(syms), str(modules))
    assert first.symbolize(0xFFFFFFFF81F28C40) == "tcp_v4_rcv+0x10"
    assert shared_kallsyms(str(syms), str(modules)) is first
    modules.write_text("veth 45056 0 - Live 0xffffffffc0b00000\n")
    syms.write_text("ffffffff81000000 T _stext\nffffffff81f28c38 T tcp_v4_rcv\n")
    again = shared_kallsyms(str(syms), str(modules))
    assert again is not first
    assert again.symbolize(0xFFFFFFFF81F28C40) == "tcp_v4_rcv+0x8"
