"""The fleet: serve and policy serve with 1, 2 and 4 nodes on one PostgreSQL,
beside one node on SQLite, in the same run.

    python benchmarks/fleet.py                 # starts a throw-away PostgreSQL cluster (.ci/pg)
    SMTPCTL_BENCH_PG=postgresql://... python benchmarks/fleet.py   # or an existing server (a database it may drop)

Every node is a real process on this machine; the clients are threads in
this process spread evenly over the nodes. For each configuration: messages/s
through `serve` (Maildir delivery, every message checked and billed) with 10
clients, and policy requests/s at END-OF-MESSAGE (each metered durably) with
8 clients. On one machine more nodes share the same two cores, so the table
shows where the next bottleneck is (the store's one write lock, or the CPU),
not what more hosts would add. Never run as a test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serve import BODY, CLIENT_TLS, LOGINS, PW, free_port, provision, start, stop  # noqa: E402
from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

MESSAGES, RECIPIENTS, SERVE_CLIENTS = 30, 3, 10
REQUESTS, POLICY_CLIENTS = 250, 8


def serve_rate(binary: str, db: str, env: dict[str, str], folder: Path, nodes: int) -> float:
    import smtplib

    ports = [free_port() for _ in range(nodes)]
    procs = [start([binary, "--db", db, "serve", "--submission", f"127.0.0.1:{port}", "--smtps", "127.0.0.1:0",
                    "--maildir", str(folder / f"maildir-{nodes}-{i}")], env, "event=ready")
             for i, port in enumerate(ports)]
    try:
        started: list[float] = []
        barrier = threading.Barrier(SERVE_CLIENTS, action=lambda: started.append(time.perf_counter()))

        def one(i: int) -> None:
            login = LOGINS[i % len(LOGINS)]
            with smtplib.SMTP("127.0.0.1", ports[i % nodes], timeout=120) as client:
                client.starttls(context=CLIENT_TLS)
                client.login(login, PW)
                barrier.wait()
                for m in range(MESSAGES):
                    client.sendmail(login, [f"r{m}-{k}@x.test" for k in range(RECIPIENTS)], BODY.format(i))

        with ThreadPoolExecutor(SERVE_CLIENTS) as pool:
            list(pool.map(one, range(SERVE_CLIENTS)))
        return SERVE_CLIENTS * MESSAGES / (time.perf_counter() - started[0])
    finally:
        for proc in procs:
            stop(proc)


def policy_rate(binary: str, db: str, env: dict[str, str], nodes: int) -> float:
    ports = [free_port() for _ in range(nodes)]
    procs = [start([binary, "--db", db, "policy", "serve", "--listen", f"127.0.0.1:{port}"], env, "event=listening")
             for port in ports]
    run = uuid.uuid4().hex[:8]
    request = ("request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nsasl_username={0}\nsender={0}\n"
               "server_address=192.0.2.{3}\nrecipient_count=3\ninstance={1}.{2}\nqueue_id=Q{1}X{2}\n\n")
    try:
        def one(i: int) -> None:
            login = LOGINS[i % len(LOGINS)]
            with socket.create_connection(("127.0.0.1", ports[i % nodes])) as conn:
                stream = conn.makefile("rwb")
                for n in range(REQUESTS):
                    stream.write(request.format(login, f"{run}-{i}", n, i % nodes).encode())
                    stream.flush()
                    answer = stream.readline()
                    assert answer.startswith(b"action=DUNNO"), answer
                    stream.readline()

        begin = time.perf_counter()
        with ThreadPoolExecutor(POLICY_CLIENTS) as pool:
            list(pool.map(one, range(POLICY_CLIENTS)))
        return POLICY_CLIENTS * REQUESTS / (time.perf_counter() - begin)
    finally:
        for proc in procs:
            stop(proc)


def postgresql(folder: Path) -> tuple[str, callable]:
    """A DSN for a fresh database, and how to clean up after."""
    given = os.environ.get("SMTPCTL_BENCH_PG")
    if given:
        return given, lambda: None
    script = Path(__file__).resolve().parent.parent / ".ci" / "pg"
    cluster = Path(tempfile.mkdtemp(prefix="smtpctl-bench-pg-"))
    os.chmod(cluster, 0o755)
    started = subprocess.run(["bash", str(script), "start", str(cluster / "c")], capture_output=True, text=True)
    if started.returncode != 0:
        raise SystemExit(f"cannot start PostgreSQL (.ci/pg): {started.stderr.strip()}")
    base = started.stdout.strip().split("=", 1)[1].strip("'")
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("CREATE DATABASE smtpctl_bench")
    dsn = base.replace("/postgres?", "/smtpctl_bench?")
    return dsn, lambda: subprocess.run(["bash", str(script), "stop", str(cluster / "c")], capture_output=True)


def main() -> None:
    binary = smtpctl()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = isolated_env(folder)
        sqlite_db = str(folder / "bench.db")
        provision(binary, sqlite_db, env, folder)
        dsn, cleanup = postgresql(folder)
        try:
            provision(binary, dsn, env, folder)
            rows = [("SQLite, 1 node", serve_rate(binary, sqlite_db, env, folder, 1),
                     policy_rate(binary, sqlite_db, env, 1))]
            for nodes in (1, 2, 4):
                rows.append((f"PostgreSQL, {nodes} node{'s' if nodes > 1 else ''}",
                             serve_rate(binary, dsn, env, folder, nodes), policy_rate(binary, dsn, env, nodes)))
        finally:
            cleanup()
    print(f"{SERVE_CLIENTS} serve clients x {MESSAGES} messages x {RECIPIENTS} recipients; {POLICY_CLIENTS} policy "
          f"clients x {REQUESTS} requests; {os.cpu_count()} cores, every node on this machine")
    print(f"{'store':22} {'serve messages/s':>17} {'policy requests/s':>18}")
    for label, messages, requests in rows:
        print(f"{label:22} {messages:17.0f} {requests:18.0f}")


if __name__ == "__main__":
    main()
