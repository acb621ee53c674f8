"""``smtpctl policy serve``: Postfix SMTP access policy delegation.

The protocol (Postfix SMTPD_POLICY_README): Postfix writes ``name=value``
lines ended by an empty line; we answer one ``action=...`` line and an empty
line, and keep the connection open for the next request.

Meant for ``smtpd_end_of_data_restrictions = check_policy_service ...``: at
END-OF-MESSAGE we meter ``recipient_count`` for ``sasl_username`` (once per
``instance``) and enforce the daily limit exactly like ``smtpctl serve``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from smtpctl.core import usage
from smtpctl.servers.runtime import StoreWorker, log_event

MAX_REQUEST_BYTES = 64 * 1024
REJECTS = {
    "revoked": "REJECT 5.7.1 SMTP credentials revoked: daily sending limit exceeded or removed; contact support",
    "over_limit": "REJECT 5.7.1 Daily sending limit exceeded; message refused; contact support",
    "too_many_recipients": "REJECT 5.5.3 Too many recipients",
    "invalid": "REJECT 5.7.1 Message refused",
}


def parse_request(block: list[str]) -> dict[str, str]:
    """``name=value`` lines to a dict (the value may itself contain ``=``)."""
    attrs = {}
    for line in block:
        name, sep, value = line.partition("=")
        if sep:
            attrs[name.strip()] = value
    return attrs


def decide(store: Any, attrs: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The action for one request, and what to log. Runs on the store thread."""
    login = attrs.get("sasl_username", "").strip().lower()
    state = attrs.get("protocol_state", "").upper()
    if attrs.get("request") != "smtpd_access_policy" or not login:
        return "DUNNO", {"reason": "not authenticated"}
    status = usage.sender_status(store, login)
    if status == "unknown":
        return "DUNNO", {"login": login, "reason": "not ours"}
    if status != "ok":
        return REJECTS[status], {"login": login, "reason": status}
    if state != "END-OF-MESSAGE":
        return "DUNNO", {"login": login, "state": state}
    try:
        recipients = int(attrs.get("recipient_count") or 0)
    except ValueError:
        recipients = 0
    instance = attrs.get("instance") or attrs.get("queue_id") or ""
    if recipients <= 0 or not instance:
        return "DUNNO", {"login": login, "reason": "nothing to meter"}
    admission = usage.admit_message(store, login, recipients, f"policy:{instance}")
    for crossing in admission.crossings:
        log_event("limit_exceeded", account=crossing.account, day=crossing.day, emails=crossing.emails,
                  limit=crossing.limit, revoked=",".join(crossing.revoked_credentials))
    info: dict[str, Any] = {"login": login, "recipients": recipients, "metered": admission.status == "accepted",
                            "queue_id": attrs.get("queue_id")}
    if not admission.accepted:
        return REJECTS.get(admission.status, REJECTS["invalid"]), {**info, "reason": admission.status}
    # The message that crosses the limit is accepted (it is recorded and
    # billed); every later one is refused by admit_message.
    return "DUNNO", info


class PolicyServer:
    def __init__(self, worker: StoreWorker):
        self.worker = worker

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or "unix"
        try:
            while True:
                block, size = [], 0
                while True:
                    line = await reader.readline()
                    if not line:
                        return  # Postfix closed the connection
                    size += len(line)
                    if size > MAX_REQUEST_BYTES:
                        log_event("policy_error", peer=peer, error="request too large")
                        return
                    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                    if not text:
                        break
                    block.append(text)
                attrs = parse_request(block)
                try:
                    action, info = await self.worker.call(decide, attrs)
                except Exception as exc:  # never leave Postfix hanging: a temporary failure
                    log_event("policy_error", error=type(exc).__name__, message=str(exc))
                    action, info = "DEFER_IF_PERMIT 4.3.0 Policy service error; try again later", {}
                log_event("policy", action=action.split()[0], state=attrs.get("protocol_state"), **info)
                writer.write(f"action={action}\n\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def serve_policy(store_path: Path, actor: str, listen: str, stop: asyncio.Event) -> None:
    from smtpctl.servers.runtime import parse_address

    worker = StoreWorker(store_path, actor)
    await worker.call(lambda store: None)
    policy = PolicyServer(worker)
    if listen.startswith("unix:"):
        path = listen[len("unix:"):]
        if os.path.exists(path):
            os.unlink(path)
        server = await asyncio.start_unix_server(policy.handle, path=path)
        os.chmod(path, 0o666)  # Postfix's smtpd runs as postfix
        address = f"unix:{path}"
    else:
        host, port = parse_address(listen, "--listen")
        server = await asyncio.start_server(policy.handle, host, port)
        bound = server.sockets[0].getsockname()
        address = f"{bound[0]}:{bound[1]}"
    log_event("listening", listener="policy", address=address)
    try:
        await stop.wait()
    finally:
        log_event("stopping")
        server.close()
        await server.wait_closed()
        worker.close()
        log_event("stopped")
