"""The systemd units in docs/servers.md parse, run the right command with options that exist, and keep
the hardening and the limits the docs promise."""

import configparser
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from smtpctl.cli.typer_app import app
from smtpctl.servers.guard import FD_RESERVE

SERVERS_MD = Path(__file__).resolve().parents[2] / "docs" / "servers.md"


def units() -> dict[str, configparser.ConfigParser]:
    found = {}
    for block in re.findall(r"```ini\n(.*?)```", SERVERS_MD.read_text(), flags=re.S):
        name = re.match(r"# /etc/systemd/system/(\S+\.service)\n", block)
        if name:
            parser = configparser.ConfigParser(interpolation=None, strict=True)  # strict: no key given twice
            parser.optionxform = str  # systemd's keys are case-sensitive
            parser.read_string(block)
            found[name[1]] = parser
    return found


UNITS = units()


def test_the_units_are_documented():
    assert sorted(UNITS) == ["smtpctl-notify.service", "smtpctl-policy.service", "smtpctl-serve.service"]


def test_notify_unit_runs_the_worker_hardened():
    unit = UNITS["smtpctl-notify.service"]
    service = unit["Service"]
    words, ctx = parsed(unit)
    assert words == ["notify", "run"]
    assert ctx.params["once"] is False  # a service: it runs until SIGTERM
    assert ctx.params["metrics_address"].startswith("127.0.0.1:")
    assert (service["Type"], service["User"], service["Group"]) == ("simple", "smtpctl", "smtpctl")
    assert (service["Restart"], service["RestartPreventExitStatus"]) == ("on-failure", "2")
    for option, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                          "PrivateTmp": "yes", "RestrictSUIDSGID": "yes", "UMask": "0077",
                          "CapabilityBoundingSet": ""}.items():
        assert service[option] == value, option
    environment = dict(pair.split("=", 1) for pair in shlex.split(service["Environment"]))
    assert service["ReadWritePaths"].split() == [str(Path(environment["SMTPCTL_DB"]).parent)]
    # SIGTERM lets the request in flight finish: systemd must wait longer than one request.
    from smtpctl.core.notices.delivery import TIMEOUT

    assert int(service["TimeoutStopSec"]) > TIMEOUT
    # Three services, three metrics ports.
    ports = {shlex.split(u["Service"]["ExecStart"])[-1] for u in UNITS.values()}
    assert len(ports) == 3
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def parsed(unit: configparser.ConfigParser):
    """ExecStart's command words and the click context its options parse into (unknown options,
    bad values and missing arguments raise, as they would at start)."""
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0] == "/opt/smtpctl/bin/smtpctl"
    command = typer.main.get_command(app)
    words, args = [], argv[1:]
    while getattr(command, "commands", None):  # a group (typer's own click: not click.Group)
        command = command.commands[args[0]]
        words.append(args.pop(0))
    return words, command.make_context(" ".join(words), args)


@pytest.mark.parametrize("name, command", [("smtpctl-serve.service", ["serve"]),
                                           ("smtpctl-policy.service", ["policy", "serve"])])
def test_unit_runs_its_server_hardened(name, command):
    unit = UNITS[name]
    service = unit["Service"]
    words, ctx = parsed(unit)
    assert words == command
    assert ctx.params["check"] is False
    assert ctx.params["metrics_address"].startswith("127.0.0.1:")  # the endpoint has no authentication
    assert (service["Type"], service["User"], service["Group"]) == ("simple", "smtpctl", "smtpctl")
    assert (service["Restart"], service["RestartPreventExitStatus"]) == ("on-failure", "2")
    for option, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                          "PrivateTmp": "yes", "RestrictSUIDSGID": "yes", "UMask": "0077"}.items():
        assert service[option] == value, option
    environment = dict(pair.split("=", 1) for pair in shlex.split(service["Environment"]))
    store_folder = str(Path(environment["SMTPCTL_DB"]).parent)
    writable = service["ReadWritePaths"].split()
    assert store_folder in writable  # SQLite writes its -wal and -shm files beside the store
    if words == ["serve"]:
        assert writable == [store_folder, str(ctx.params["maildir"])]
        # Ports below 1024, and no other privilege.
        assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
        fds_per_connection = 2 if ctx.params["relay"] else 1
        assert int(service["LimitNOFILE"]) == ctx.params["max_connections"] * fds_per_connection + FD_RESERVE
    else:
        assert writable == [store_folder]
        assert service["CapabilityBoundingSet"] == ""
    assert unit["Install"]["WantedBy"] == "multi-user.target"
