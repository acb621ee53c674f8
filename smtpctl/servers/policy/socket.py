"""Where the policy service listens: a TCP address or a unix socket (its
mode and group set before anyone can connect), and the start and stop."""

from __future__ import annotations

import asyncio
import grp
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from smtpctl.core.model.errors import InvalidInput
from smtpctl.servers.metrics import NOOP, create_metrics
from smtpctl.servers.policy.protocol import PolicyServer
from smtpctl.servers.runtime import StoreWorker, listen_sockets, log_event, parse_address
from smtpctl.servers.scrape import serve_endpoint

DEFAULT_SOCKET_MODE = 0o660
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (Linux)


def parse_socket_mode(text: str) -> int:
    """``--socket-mode``: octal permission bits (``0660``, ``660``, ``0o660``).
    Raises ``InvalidInput`` for anything else or bits beyond 0777."""
    raw = text.strip().lower()
    digits = raw[2:] if raw.startswith("0o") else raw
    if not digits or not re.fullmatch(r"[0-7]{1,4}", digits):
        raise InvalidInput(f"--socket-mode takes octal permission bits such as 0660, not {text!r}")
    mode = int(digits, 8)
    if mode > 0o777:
        raise InvalidInput(f"--socket-mode {text}: only permission bits (at most 0777), no setuid/setgid/sticky")
    return mode


def parse_socket_group(text: str) -> int:
    """``--socket-group``: a group name or a numeric gid; the gid. Raises
    ``InvalidInput`` for a group that does not exist."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        raise InvalidInput(f"--socket-group: no group named {text!r}") from None


@dataclass(frozen=True)
class UnixListen:
    path: Path
    mode: int = DEFAULT_SOCKET_MODE
    gid: int | None = None


def check_unix(path: Path) -> None:
    """May a server listen at ``path``? Nothing there, or a stale socket
    (nobody answers on it), yes; a live socket (another server listens) or a
    file that is not a socket, no (``InvalidInput``); nor a path too long
    for a unix socket or in a folder that does not exist."""
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise InvalidInput(f"--listen unix:{path}: a unix socket path may be at most {MAX_UNIX_PATH} bytes")
    if not path.parent.is_dir():
        raise InvalidInput(f"--listen unix:{path}: the folder {path.parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidInput(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidInput(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: nobody listens there
    except OSError as exc:
        raise InvalidInput(f"cannot use {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise InvalidInput(f"another server is listening on {path}")


def bind_unix(spec: UnixListen) -> socket.socket:
    """A listening unix socket at ``spec.path`` with its mode (and group) set
    before anyone can connect: it is bound under a temporary name beside the
    path, given its mode and group, then renamed onto the path (replacing a
    stale socket). Raises ``InvalidInput`` as ``check_unix`` does, or when
    the socket cannot be made."""
    path = spec.path
    check_unix(path)
    staging = path.with_name(f".smtpctl{os.getpid()}")  # short: it has the same path length limit
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staging.unlink(missing_ok=True)
        sock.bind(str(staging))
        os.chmod(staging, spec.mode)
        if spec.gid is not None:
            os.chown(staging, -1, spec.gid)
        sock.listen(128)
        os.rename(staging, path)
    except OSError as exc:
        sock.close()
        staging.unlink(missing_ok=True)
        what = f"give {path} to group {spec.gid}" if exc.errno == 1 and spec.gid is not None else f"listen on {path}"
        raise InvalidInput(f"cannot {what}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def serve_policy(store_path: Path, actor: str, listen: str, stop: asyncio.Event,
                       unix: UnixListen | None = None, sockets: list[socket.socket] | None = None,
                       metrics_sockets: list[socket.socket] | None = None) -> None:
    """Listen on ``listen`` (HOST:PORT), or on the unix socket ``unix``, until
    ``stop`` is set; with ``metrics_sockets`` (bound already) serve the
    metrics there. Raises ``InvalidInput`` when it cannot listen."""
    worker = StoreWorker(store_path, actor)
    loop = asyncio.get_running_loop()
    try:
        await worker.call(lambda store: None)
        metrics = create_metrics("policy") if metrics_sockets else NOOP  # imports prometheus-client
        policy = PolicyServer(worker, metrics)
        scrapes = await serve_endpoint(metrics, metrics_sockets) if metrics_sockets else None
        inode = None
        if unix is not None:
            sock = bind_unix(unix)
            inode = os.stat(unix.path).st_ino
            servers = [await loop.create_unix_server(policy.connection, sock=sock)]
            address = f"unix:{unix.path}"
            extra = {"mode": f"{unix.mode:04o}", "gid": unix.gid}
        else:
            if sockets is None:
                [sockets] = listen_sockets([parse_address(listen, "--listen")])
            # A name such as localhost may give one socket per address family.
            servers = [await loop.create_server(policy.connection, sock=s) for s in sockets]
            bound = sockets[0].getsockname()
            address = f"{bound[0]}:{bound[1]}"
            extra = {}
        log_event("listening", listener="policy", address=address, **extra)
        try:
            await stop.wait()
        finally:
            log_event("stopping")
            if scrapes is not None:
                scrapes.close()
            for server in servers:
                server.close()
            for server in servers:
                await server.wait_closed()
            policy.close()
            if unix is not None:
                try:  # remove our socket, not one a successor has put there since
                    if os.stat(unix.path).st_ino == inode:
                        os.unlink(unix.path)
                except OSError:
                    pass
    finally:
        worker.close()
    log_event("stopped")
