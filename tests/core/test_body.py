"""servers/body.py: a body in memory while small, in an unnamed file past
the threshold (issue 23), read back whole and in line-aligned chunks; the
header From read line by line."""

from __future__ import annotations

import os
from email.parser import BytesHeaderParser
from email.utils import getaddresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpctl.servers import body as body_module
from smtpctl.servers.body import Body, Spool, header_from, prepare_spool

LINE = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")


def filled(spool: Spool, lines: list[bytes]) -> Body:
    body = spool.body()
    for line in lines:
        body.add(line)
    return body


@settings(max_examples=200, deadline=None)
@given(st.lists(LINE, max_size=80), st.integers(0, 3000))
def test_a_body_reads_back_as_it_was_given_in_line_aligned_chunks(tmp_path_factory, lines, above):
    directory = tmp_path_factory.mktemp("spool")
    body = filled(Spool(above, directory), lines)
    try:
        assert body.size == sum(map(len, lines))
        assert body.spooled == (body.size > above)
        chunks = list(body.chunks())
        assert b"".join(chunks) == b"".join(lines)
        assert all(chunk.endswith(b"\r\n") for chunk in chunks)
        assert os.listdir(directory) == []  # the file has no name: no crash can leave it behind
    finally:
        body.close()
    assert list(body.chunks()) == []  # closed: nothing held


def test_a_spooled_body_holds_no_more_than_the_threshold_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(body_module, "CHUNK", 4096)  # several chunks from a small body
    body = filled(Spool(1000, tmp_path), [b"x" * 98 + b"\r\n"] * 500)
    assert body.spooled and body._lines == []
    chunks = list(body.chunks())
    assert len(chunks) > 5 and all(4096 <= len(c) < 4096 + 100 for c in chunks[:-1])
    assert b"".join(chunks) == (b"x" * 98 + b"\r\n") * 500
    body.close()
    body.close()  # idempotent


def test_header_lines_stop_at_the_first_empty_line_spooled_or_not(tmp_path):
    lines = [b"From: a@d.example\r\n", b"Subject: x\r\n", b"\r\n", b"From: not@header.example\r\n"]
    for above in (0, 10_000):
        body = filled(Spool(above, tmp_path), lines)
        assert list(body.header_lines()) == lines[:2]
        assert header_from(body.header_lines()) == ["a@d.example"]
        body.close()


def test_a_from_after_a_bare_lf_or_cr_is_found_spooled_or_not(tmp_path):
    """A bare LF or CR ends a line for mail readers (and Python's parser): a
    From there must not hide inside the field before it."""
    for hidden in (b"X-A: y\nFrom: ceo@rival.example\r\n", b"X-A: y\rFrom: ceo@rival.example\r\n"):
        for above in (0, 10_000):
            body = filled(Spool(above, tmp_path), [b"From: app@d.example\r\n", hidden, b"\r\n", b"text\r\n"])
            assert header_from(body.header_lines()) == ["app@d.example", "ceo@rival.example"], (hidden, above)
            parsed = BytesHeaderParser().parsebytes(b"".join(body.chunks()))
            assert [a for _, a in getaddresses(parsed.get_all("From"))] == ["app@d.example", "ceo@rival.example"]
            body.close()
    body = filled(Spool(10_000, tmp_path), [b"Subject: x\r\n", b"\n", b"From: in@the.body\r\n"])
    assert header_from(body.header_lines()) == []  # a bare LF alone is the empty line that ends the header


def test_header_from_finds_every_from_field_folded_or_not():
    block = [b"Subject: hi\r\n", b"from: One <one@a.example>,\r\n", b"\t two@b.example\r\n", b"To: t@c.example\r\n",
             b"FROM : three@c.example\r\n", b"X-From: no@x.example\r\n", b"not a header\r\n",
             b"From: four@d.example\r\n"]
    # Past a line that is no field Python's parser calls the rest body; this check still reads them.
    assert header_from(block) == ["one@a.example", "two@b.example", "three@c.example", "four@d.example"]
    assert header_from([b"Subject: x\r\n"]) == []


FIELD_NAME = st.sampled_from(["From", "from", "To", "Subject", "Reply-To", "X-Mailer", "Sender"])
ADDRESS = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.example", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(FIELD_NAME, st.lists(ADDRESS, min_size=1, max_size=3), st.booleans()), max_size=8))
def test_header_from_agrees_with_pythons_parser_on_well_formed_headers(fields):
    lines = []
    for name, addresses, folded in fields:
        if folded and len(addresses) > 1:
            lines.append(f"{name}: {addresses[0]},\r\n".encode())
            lines.append(f"\t{', '.join(addresses[1:])}\r\n".encode())
        else:
            lines.append(f"{name}: {', '.join(addresses)}\r\n".encode())
    parsed = BytesHeaderParser().parsebytes(b"".join(lines) + b"\r\nbody\r\n")
    expected = [a for _, a in getaddresses([str(v) for v in parsed.get_all("From", [])]) if a]
    assert header_from(lines) == expected


def test_a_spool_folder_that_cannot_take_a_body_fails_at_start(tmp_path):
    prepare_spool(Spool(10, tmp_path / "made" / "here"))
    assert (tmp_path / "made" / "here").is_dir() and os.listdir(tmp_path / "made" / "here") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        prepare_spool(Spool(10, tmp_path / "file" / "spool"))
