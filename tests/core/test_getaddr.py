"""serve's address parser is aiosmtpd's, without its per-call class: same answers for any argument."""

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpctl.servers.submission import SubmissionSMTP

CASES = ["", "<a@b.c>", "<a@b.c> SIZE=100", "a@b.c", "<>", "< a@b.c >", '<"q s"@b.c>', "<a@[1.2.3.4]>", "garbage",
         "<a@b", "<@x,@y:a@b.c>", "<" + "x" * 70 + "@b.c>", "<a@b.c> BODY=8BITMIME SMTPUTF8", "<ü@b.c>"]


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
