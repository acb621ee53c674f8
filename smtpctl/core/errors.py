"""The project's one error type and its exit codes.

Every failure a user can cause is a ``SmtpctlError`` subclass; its
``exit_code`` is the stable code documented in docs/exit-codes.md. The CLI
catches ``SmtpctlError`` in one place and prints ``Error: <message>``.
"""

from __future__ import annotations

from enum import IntEnum


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


class SmtpctlError(Exception):
    """Base of every error smtpctl reports to a user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
