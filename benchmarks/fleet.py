"""The fleet: serve and policy serve with 1, 2 and 4 nodes on one PostgreSQL,
beside one node on SQLite, in the same run.

    python benchmarks/fleet.py                 # starts a throw-away PostgreSQL cluster (.ci/pg)
    SMTPCTL_BENCH_PG=postgresql://... python benchmarks/fleet.py   # or an existing server (a database it may drop)

    python benchmarks/fleet.py policy          # the policy figures only (faster)

Every node is a real process on this machine; the clients are threads in
this process spread evenly over the nodes, and over four accounts (a fleet
meters many accounts; the per-account lock lets different accounts meter in
parallel, docs/store.md). For each configuration: messages/s through `serve`
(Maildir delivery, every message checked and billed) with 10 clients, and
policy requests/s at END-OF-MESSAGE (each metered durably) with 8 clients,
with the CPU the nodes (and the PostgreSQL server processes) used per
request. On one machine more nodes share the same two cores, so the table
shows where the next bottleneck is (the store's locks, or the CPU), not what
more hosts would add. Never run as a test.
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

from benchmarks.serve import BODY, CLIENT_TLS, PW, cpu_seconds, free_port, start, stop  # noqa: E402
from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

MESSAGES, RECIPIENTS, SERVE_CLIENTS = 30, 3, 10
REQUESTS, POLICY_CLIENTS = 250, 8
ACCOUNTS = 4  # client i sends as an account i % ACCOUNTS
LOGINS = [f"u{i // ACCOUNTS % 5}@b{i % ACCOUNTS}.example" for i in range(5 * ACCOUNTS)]


def provision(binary: str, db: str, env: dict[str, str], folder: Path) -> None:
    """ACCOUNTS accounts without a practical limit, each one domain with five credentials."""
    (folder / "pw").write_text(PW + "\n")
    doc, pw = '[[agencies]]\nname = "bench"\n', folder / "pw"
    for a in range(ACCOUNTS):
        doc += (f'[[accounts]]\nname = "bench{a}"\nagency = "bench"\ndaily_limit = 100000000\n'
                f'[[domains]]\nname = "b{a}.example"\naccount = "bench{a}"\n')
        doc += "".join(f'[[credentials]]\nlogin = "u{k}@b{a}.example"\npassword_file = "{pw}"\n'
                       for k in range(5))
    subprocess.run([binary, "--db", db, "apply", "-"], input=doc, env=env, check=True, capture_output=True, text=True)


POSTMASTER: list[int] = []  # the benchmark cluster's server process, when this script started it


def postgres_cpu() -> float:
    """CPU seconds used so far by the benchmark cluster's server processes
    (its postmaster and the backends it forked; 0 for a server given in
    SMTPCTL_BENCH_PG, which may run elsewhere)."""
    if not POSTMASTER:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat.parent.name) in POSTMASTER or int(fields[1]) in POSTMASTER:  # fields[1]: the parent pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Cpu:
    """The nodes' CPU and PostgreSQL's over one load."""

    def __init__(self, procs: list[subprocess.Popen]):
        self.procs = procs
        self.nodes0, self.pg0 = sum(cpu_seconds(p.pid) for p in procs), postgres_cpu()

    def per(self, count: int) -> tuple[float, float]:
        """(node ms, PostgreSQL ms) per unit of work."""
        nodes = sum(cpu_seconds(p.pid) for p in self.procs) - self.nodes0
        return 1000 * nodes / count, 1000 * (postgres_cpu() - self.pg0) / count


def serve_rate(binary: str, db: str, env: dict[str, str], folder: Path, nodes: int) -> tuple[float, float, float]:
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

        cpu = Cpu(procs)
        with ThreadPoolExecutor(SERVE_CLIENTS) as pool:
            list(pool.map(one, range(SERVE_CLIENTS)))
        return (SERVE_CLIENTS * MESSAGES / (time.perf_counter() - started[0]), *cpu.per(SERVE_CLIENTS * MESSAGES))
    finally:
        for proc in procs:
            stop(proc)


def policy_rate(binary: str, db: str, env: dict[str, str], nodes: int) -> tuple[float, float, float]:
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

        cpu = Cpu(procs)
        begin = time.perf_counter()
        with ThreadPoolExecutor(POLICY_CLIENTS) as pool:
            list(pool.map(one, range(POLICY_CLIENTS)))
        return (POLICY_CLIENTS * REQUESTS / (time.perf_counter() - begin), *cpu.per(POLICY_CLIENTS * REQUESTS))
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
    POSTMASTER.append(int((cluster / "c" / "data" / "postmaster.pid").read_text().split()[0]))
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("CREATE DATABASE smtpctl_bench")
    dsn = base.replace("/postgres?", "/smtpctl_bench?")
    return dsn, lambda: subprocess.run(["bash", str(script), "stop", str(cluster / "c")], capture_output=True)


def main() -> None:
    only_policy = sys.argv[1:] == ["policy"]
    binary = smtpctl()
    none = (0.0, 0.0, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = isolated_env(folder)
        sqlite_db = str(folder / "bench.db")
        provision(binary, sqlite_db, env, folder)
        dsn, cleanup = postgresql(folder)
        try:
            provision(binary, dsn, env, folder)
            rows = [("SQLite, 1 node", none if only_policy else serve_rate(binary, sqlite_db, env, folder, 1),
                     policy_rate(binary, sqlite_db, env, 1))]
            for nodes in (1, 2, 4):
                rows.append((f"PostgreSQL, {nodes} node{'s' if nodes > 1 else ''}",
                             none if only_policy else serve_rate(binary, dsn, env, folder, nodes),
                             policy_rate(binary, dsn, env, nodes)))
        finally:
            cleanup()
    print(f"{SERVE_CLIENTS} serve clients x {MESSAGES} messages x {RECIPIENTS} recipients; {POLICY_CLIENTS} policy "
          f"clients x {REQUESTS} requests; {os.cpu_count()} cores, every node on this machine")
    print(f"{'store':22} {'serve messages/s':>17} {'CPU ms/msg node+pg':>19} {'policy requests/s':>18} "
          f"{'CPU ms/req node+pg':>19}")
    for label, (messages, s_node, s_pg), (requests, p_node, p_pg) in rows:
        print(f"{label:22} {messages:17.0f} {s_node:11.2f}+{s_pg:<7.2f} {requests:18.0f} {p_node:11.2f}+{p_pg:<7.2f}")


if __name__ == "__main__":
    main()
