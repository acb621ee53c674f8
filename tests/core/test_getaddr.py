"""serve's address parser is aiosmtpd's, without its per-call class: same answers for any argument."""

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpctl.servers.submission.protocol import _SIMPLE_ADDRESS, SubmissionSMTP

CASES = ["", "<a@b.c>", "<a@b.c> SIZE=100", "a@b.c", "<>", "< a@b.c >", '<"q s"@b.c>', "<a@[1.2.3.4]>", "garbage",
         "<a@b", "<@x,@y:a@b.c>", "<" + "x" * 70 + "@b.c>", "<a@b.c> BODY=8BITMIME SMTPUTF8", "<ü@b.c>",
         # the fast path's edges: blanks and comments after ">", encoded words, atext, dots
         "<a@b.c>\tSIZE=1", "<a@b.c>  SIZE=1  BODY=7BIT", "<a@b.c> (c) SIZE=1", "<a@b.c>(c)", "<a@b.c> ", "<a@b.c>x",
         "<=?utf-8?q?a?=@b.c>", "<a=?b@c.d>", "<a.b+c@d-e.f>", "<a..b@c.d>", "<.a@b.c>", "<a.@b.c>", "<a@b..c>",
         "<a@-b.c>", "<A!#$%&'*+/=?^_`{|}~-z@EXAMPLE.test>", "<a@b.c>> SIZE=1"]


def parsers(limit: int):
    theirs, ours = object.__new__(SMTP), object.__new__(SubmissionSMTP)
    theirs.local_part_limit = ours.local_part_limit = limit
    return (lambda arg: SMTP._getaddr(theirs, arg)), (lambda arg: SubmissionSMTP._getaddr(ours, arg))


def test_known_arguments():
    theirs, ours = parsers(64)
    for arg in CASES:
        assert ours(arg) == theirs(arg), arg


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('<>@.:,"[] \\ab-_=+üx1'), max_size=40), st.sampled_from([0, 3, 64]))
def test_any_argument(arg, limit):
    theirs, ours = parsers(limit)
    try:
        expected = theirs(arg)
    except (IndexError, AttributeError):  # aiosmtpd answers "500 Error: (IndexError) ..."; we say malformed
        expected = (None, None)
    assert ours(arg) == expected


def test_arguments_that_crash_the_stdlib_parser_are_malformed():
    _, ours = parsers(64)
    for arg in ("<", "1@[", '"', "1@"):
        assert ours(arg) == (None, None), arg


ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(ATEXT + "=?\""), min_size=0, max_size=6), min_size=1, max_size=3),
       st.lists(st.text(alphabet=st.sampled_from("abc-_09"), min_size=0, max_size=5), min_size=1, max_size=3),
       st.sampled_from(["", " ", "\t", "  ", " (x) ", "x", ">"]), st.sampled_from(["", "SIZE=10", "BODY=8BITMIME x"]),
       st.sampled_from([0, 3, 64]))
def test_simple_addresses_take_the_fast_path_with_the_same_answer(local, domain, gap, params, limit):
    """What clients send (``<local@domain> PARAMS``), near the fast path's edges: the same answer as aiosmtpd."""
    arg = "<" + ".".join(local) + "@" + ".".join(domain) + ">" + gap + params
    theirs, ours = parsers(limit)
    try:
        expected = theirs(arg)
    except (IndexError, AttributeError):
        expected = (None, None)
    assert ours(arg) == expected


def test_the_fast_path_answers_what_clients_send():
    """The common arguments really take the fast path (else it buys nothing and tests nothing)."""
    for arg in ("<u0@bench.example>", "<r1-2@x.test> SIZE=1234 BODY=8BITMIME", "<first.last+tag@mail.example.org>"):
        assert _SIMPLE_ADDRESS.match(arg) is not None, arg
