from __future__ import annotations

import pytest
from typer.testing import CliRunner

from smtpctl.cli.typer_app import app


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns a Result with exit_code, stdout, stderr."""
    runner = CliRunner()

    def _invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return _invoke
