"""Long tables through a pager, as git and gh do.

Only when stdout is a terminal: a pipe or a file gets the table as it is.
The pager is ``SMTPCTL_PAGER``, else ``PAGER``, else ``less``; an empty
value or ``cat`` turns paging off, and so does the root option
``--no-pager`` (``SMTPCTL_NO_PAGER=1``). A table that fits the screen is
printed directly; a longer one is drawn at the terminal's width and handed
to the pager (``less`` gets ``LESS=FRX`` unless ``LESS`` is set: colours
kept, the screen left as it was on exit).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

NO_PAGER_ENV = "SMTPCTL_NO_PAGER"


def pager_command() -> str | None:
    """The pager to use for this run's stdout, or ``None``."""
    if os.environ.get(NO_PAGER_ENV) or not _isatty(sys.stdout):
        return None
    for name in ("SMTPCTL_PAGER", "PAGER"):
        if name in os.environ:
            chosen = os.environ[name].strip()
            return None if chosen in ("", "cat") else chosen
    return "less"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class TerminalBuffer(io.StringIO):
    """Where a table is drawn before it is paged: styled and as wide as the terminal it stands for."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.terminal_width = width

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return True


def paged(draw: Callable[[], None]) -> None:
    """Run ``draw`` (which writes to ``sys.stdout``) and show what it wrote
    through the pager when it is longer than the screen."""
    command = pager_command()
    if command is None:
        draw()
        return
    size = shutil.get_terminal_size()
    buffer, real = TerminalBuffer(size.columns), sys.stdout
    sys.stdout = buffer
    try:
        draw()
    finally:
        sys.stdout = real
    text = buffer.getvalue()
    if text.count("\n") < size.lines:
        real.write(text)
        return
    real.flush()
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    try:
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
    except OSError:
        real.write(text)
        return
    try:
        assert proc.stdin is not None
        proc.stdin.write(text.encode("utf-8", "replace"))
        proc.stdin.close()
    except BrokenPipeError:  # the person quit the pager before the end
        pass
    proc.wait()
