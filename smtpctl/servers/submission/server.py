"""``smtpctl serve``'s start and stop: the store, the delivery chosen once,
the listeners with their connection caps, and the metrics endpoint."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

from smtpctl.servers import guard
from smtpctl.servers.delivery import Delivery, MaildirDelivery, NextHop, RelayDelivery
from smtpctl.servers.guard import ConnectionLimits, Listener
from smtpctl.servers.metrics import NOOP, Metrics, create_metrics
from smtpctl.servers.runtime import StoreWorker, listen_sockets, log_event
from smtpctl.servers.scrape import serve_endpoint
from smtpctl.servers.submission.config import ServeConfig
from smtpctl.servers.submission.handler import SubmissionHandler
from smtpctl.servers.submission.protocol import ImplicitTLSGate, SubmissionSMTP


def choose_delivery(config: ServeConfig, worker: StoreWorker, metrics: Metrics) -> Delivery:
    """``--relay`` or the Maildir, once for the server's life."""
    if config.relay is None:
        return MaildirDelivery(config.maildir, worker)
    host, port = config.relay
    hop = NextHop(host, port, config.hostname, config.relay_starttls, config.relay_username, config.relay_password)
    return RelayDelivery(hop, worker, metrics)


async def serve(config: ServeConfig, stop: asyncio.Event) -> None:
    """Listen on every address until ``stop`` is set; log each listener."""
    import logging
    import warnings

    # aiosmtpd logs, unstructured, on every AUTH (an attribute it sets itself)
    # and on every implicit-TLS session (AUTH without auth_require_tls, which
    # SubmissionSMTP makes safe by refusing clear transports). Our own event
    # lines say what happened.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    loop = asyncio.get_running_loop()
    bound = config.bound or bind_listeners(config)  # every address or none, before anything else
    worker = StoreWorker(config.store_path, config.actor)
    metrics = create_metrics("serve") if config.metrics_bound else NOOP  # imports prometheus-client
    delivery = choose_delivery(config, worker, metrics)
    handler = SubmissionHandler(config, worker, delivery, metrics)
    await worker.call(lambda store: None)  # open (and migrate) the store before accepting anyone
    await delivery.start()

    limits = ConnectionLimits(config.max_connections or guard.default_max_connections(config.fds_per_connection),
                              config.max_connections_per_client, metrics)

    def factory(listener: str, implicit: bool):
        def make() -> SubmissionSMTP:
            common = dict(hostname=config.hostname, auth_required=True, data_size_limit=config.data_size_limit,
                          ident="smtpctl", loop=loop, limits=limits, timeout=config.timeout,
                          pre_auth_timeout=config.pre_auth_timeout, spool=config.spool)
            if implicit:
                return SubmissionSMTP(handler, listener=listener, implicit_tls=True, auth_require_tls=False,
                                      **common)
            return SubmissionSMTP(handler, listener=listener, implicit_tls=False, tls_context=config.tls,
                                  require_starttls=True, auth_require_tls=True, **common)
        return make

    handshake_timeout = min(config.pre_auth_timeout, 60.0)

    adopting: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    async def adopt(conn: socket.socket, protocol: asyncio.Protocol, release: Callable[[], None]) -> None:
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock=conn)
        except asyncio.CancelledError:
            conn.close()
            release()
            raise
        except Exception:  # the client is gone already; its slot goes back
            conn.close()
            release()

    def start_adopting(conn: socket.socket, protocol: asyncio.Protocol, release: Callable[[], None]) -> None:
        task = loop.create_task(adopt(conn, protocol, release))
        adopting.add(task)
        task.add_done_callback(adopting.discard)

    def submission_admitted(conn: socket.socket, key: str) -> None:
        app = make_submission()
        app.slot = key
        start_adopting(conn, app, app.release_slot)

    def smtps_admitted(conn: socket.socket, key: str) -> None:
        gate = ImplicitTLSGate(make_smtps, config.tls, limits, handshake_timeout, key)
        start_adopting(conn, gate, gate.release)

    make_submission, make_smtps = factory("submission", False), factory("smtps", True)
    scrapes = await serve_endpoint(metrics, config.metrics_bound) if config.metrics_bound else None
    listening: list[Listener] = []
    for name, admitted, clear in (("submission", submission_admitted, True), ("smtps", smtps_admitted, False)):
        for sock in bound[name]:
            listener = Listener(sock, name, limits, admitted, clear_refusal=clear)
            listener.start()
            listening.append(listener)
            log_event("listening", listener=name, address=listener.address,
                      tls="starttls-required" if clear else "implicit")
    log_event("ready", delivery=delivery.description, max_connections=limits.total,
              max_connections_per_client=limits.per_client)
    try:
        await stop.wait()
    finally:
        log_event("stopping")
        for listener in listening:
            listener.close()
        if scrapes is not None:
            scrapes.close()
        handler.close()
        worker.close()
        log_event("stopped")


def bind_listeners(config: ServeConfig) -> dict[str, list[socket.socket]]:
    """Bind every listener of ``config``, all or nothing (raises ``CannotListen``)."""
    sockets = listen_sockets([*config.submission, *config.smtps], backlog=guard.LISTEN_BACKLOG)
    split = len(config.submission)
    return {"submission": [s for group in sockets[:split] for s in group],
            "smtps": [s for group in sockets[split:] for s in group]}
