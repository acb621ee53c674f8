"""The project's one error type and its exit codes.

Every failure a user can cause is a ``SmtpctlError`` subclass; its
``exit_code`` is the stable code documented in docs/exit-codes.md. An error
is data: what went wrong (``text``), the object it concerns (``subject``),
and, where there is one, the command that fixes it (``fix``, the arguments
of an smtpctl command). The core never writes command-line syntax: a front
end words the fix (the CLI as a shell command, ``smtpctl.cli.output.word``);
``message`` is the plain wording any other caller may show.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, NamedTuple


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    INVALID = 2
    NOT_FOUND = 3
    EXISTS = 4
    LIMIT = 5
    BLOCKED = 6
    STORE = 7
    AUTH_FAILED = 8
    CANNOT_LISTEN = 9
    DELIVERY_FAILED = 10


class Fix(NamedTuple):
    """A command that would fix or explain something: its words after
    ``smtpctl`` (a name in it is one argument, whatever it holds), and how a
    message introduces it (``"more"``, ``"raise the limit with"``)."""

    args: tuple[str, ...]
    lead: str = ""

    def plain(self) -> str:
        """The command as plain words, for callers that are not a shell."""
        return "smtpctl " + " ".join(self.args)


FIX = "{fix}"  # where a message places its fix, worded by the front end


Fixes = Fix | tuple[Fix, ...] | None


def _word(text: str, fix: Fixes, command: Callable[[Fix], str]) -> str:
    """``text`` with its fix (or fixes, sharing the first one's lead) written by ``command``."""
    if not fix:
        return text
    fixes = (fix,) if isinstance(fix, Fix) else fix  # (a Fix is itself a named tuple)
    written = ", ".join(command(f) for f in fixes)
    if FIX in text:
        return text.replace(FIX, written)
    lead = f"{fixes[0].lead}: " if fixes[0].lead else ""
    return f"{text}; {lead}{written}"


@dataclass
class Notice:
    """A warning the core hands back with a result (not an error): its text
    and, where there is one, the command that acts on it. (A dataclass, not a
    named tuple: JSON output would write a tuple as an array.)"""

    text: str
    fix: Fixes = None

    def worded(self, command: Callable[[Fix], str]) -> str:
        return _word(self.text, self.fix, command)

    @property
    def message(self) -> str:
        return _word(self.text, self.fix, Fix.plain)


class SmtpctlError(Exception):
    """Base of every error smtpctl reports to a user.

    ``text`` may hold ``{fix}``: the place the fix's command goes when the
    error is worded; without it a fix is added at the end (``; lead: cmd``).
    """

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, text: str, *, subject: str | None = None, fix: Fixes = None):
        self.text, self.subject, self.fix = text, subject, fix
        super().__init__(self.worded(Fix.plain))

    def worded(self, command: Callable[[Fix], str]) -> str:
        """The message with the fix's command written by ``command(fix)``."""
        return _word(self.text, self.fix, command)

    @property
    def message(self) -> str:
        return self.worded(Fix.plain)


class InvalidInput(SmtpctlError):
    exit_code = ExitCode.INVALID


class NotFound(SmtpctlError):
    exit_code = ExitCode.NOT_FOUND


class AlreadyExists(SmtpctlError):
    exit_code = ExitCode.EXISTS


class LimitReached(SmtpctlError):
    exit_code = ExitCode.LIMIT


class Blocked(SmtpctlError):
    exit_code = ExitCode.BLOCKED


class StoreError(SmtpctlError):
    exit_code = ExitCode.STORE


class AuthFailed(SmtpctlError):
    exit_code = ExitCode.AUTH_FAILED


class CannotListen(SmtpctlError):
    """A server cannot bind one of its addresses (in use, not permitted, not on this host)."""

    exit_code = ExitCode.CANNOT_LISTEN


class DeliveryFailed(SmtpctlError):
    """A webhook endpoint did not answer 2xx (``notify test``)."""

    exit_code = ExitCode.DELIVERY_FAILED
