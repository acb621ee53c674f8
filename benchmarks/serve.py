"""The data plane under load, against a bare aiosmtpd ceiling, in one run.

    python benchmarks/serve.py

- messages/s through `smtpctl serve` (Maildir delivery): 10 concurrent
  authenticated clients, one connection each, 50 messages of 3 recipients
  per connection; the same load against a bare aiosmtpd server (same
  STARTTLS, AUTH that accepts anything, a handler that stores nothing),
  both servers up and loaded in turns, 5 rounds each, medians;
- AUTH handshakes/s (connect, STARTTLS, AUTH PLAIN, QUIT) with 10 clients
  sharing one client TLS context, against the same bare server;
- policy requests/s at END-OF-MESSAGE against `smtpctl policy serve`
  (10 connections, 200 requests each, each request metered; a fresh
  message id each round), median of ``--rounds`` rounds.
Clients are threads in this process; both servers face the same clients.

    python benchmarks/serve.py --only policy [--rounds 9] [--before OLD/bin/smtpctl] [--servers 1,2]

runs the policy figures alone; with ``--before`` the policy servers of two
builds (each on a store of its own) take the rounds in turns, so a change is
measured against the build before it under the same load of the moment;
``--servers 1,2`` adds setups of two servers (two processes, as two nodes)
on one store, the clients spread over them, in the same turns.
Never run as a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import summary  # noqa: E402  (benchmarks/summary.py: this folder is on sys.path)

from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

CLIENTS, MESSAGES, RECIPIENTS = 10, 50, 3
ROUNDS = 5  # serve and bare in turns, medians
PW = "benchmark-password-123"
BODY = "From: u{0}@bench.example\r\nTo: a@x.test\r\nSubject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * 26


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


# One context for every client connection, as a real submitting application
# keeps: building one costs ~16 ms of client CPU and would hide the server's
# own AUTH cost behind the client's.
CLIENT_TLS = _client_tls()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BARE = r'''
import asyncio, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult
cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); ctx.load_cert_chain(cert, key)
class Nothing:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
def accept(server, session, envelope, mechanism, data):
    return AuthResult(success=True)
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Nothing(), tls_context=ctx, require_starttls=True,
        auth_required=True, authenticator=accept, hostname="bare"), "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["policy", "serve"],
                        help="run only these figures (serve: messages/s against bare aiosmtpd)")
    parser.add_argument("--rounds", type=int, default=POLICY_ROUNDS, help="policy rounds (median)")
    parser.add_argument("--before", help="with --only policy: another build's smtpctl, loaded in turns")
    parser.add_argument("--servers", default="1", metavar="N[,N...]",
                        help="with --only policy: policy servers of each build on one store, the clients spread "
                             "over them (each a process, as the nodes of a fleet); several counts take turns")
    args = parser.parse_args()
    if args.before and args.only != "policy":
        parser.error("--before needs --only policy")
    try:
        counts = tuple(int(n) for n in args.servers.split(","))
    except ValueError:
        parser.error("--servers takes counts such as 1 or 1,2")
    if min(counts) < 1 or counts != (1,) and args.only != "policy":
        parser.error("--servers N (N >= 1) needs --only policy")
    binary = smtpctl()
    if args.only == "policy":
        return policy_only(binary, args.rounds, args.before, counts)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = isolated_env(tmp_path, tmp_path / "bench.db")
        provision(binary, str(tmp_path / "bench.db"), env, tmp_path)

        cert, key = tmp_path / "tls" / "selfsigned-cert.pem", tmp_path / "tls" / "selfsigned-key.pem"
        serve_port, bare_port = free_port(), free_port()
        serve = start([binary, "serve", "--submission", f"127.0.0.1:{serve_port}", "--smtps", "127.0.0.1:0",
                       "--maildir", str(tmp_path / "maildir")], env, "event=ready")
        bare = start([sys.executable, "-c", BARE, str(cert), str(key), str(bare_port)], env, "ready")
        # Both servers face the same load in turns (serve first, then bare first, ...): on a machine
        # whose load moves, one run of each minutes apart compares two different machines.
        rounds: dict[str, list[tuple[float, float]]] = {"serve": [], "bare": []}
        for r in range(ROUNDS):
            order = [("serve", serve, serve_port), ("bare", bare, bare_port)]
            for name, proc, port in order if r % 2 == 0 else order[::-1]:
                cpu0 = cpu_seconds(proc.pid)
                seconds = send_load(port)
                rounds[name].append((seconds, cpu_seconds(proc.pid) - cpu0))
        smtp_time, serve_cpu = (statistics.median(x[i] for x in rounds["serve"]) for i in (0, 1))
        bare_time, bare_cpu = (statistics.median(x[i] for x in rounds["bare"]) for i in (0, 1))
        ratios = sorted(b[0] / s[0] for s, b in zip(rounds["serve"], rounds["bare"]))
        stage_wall, stage_system = stage_floor(tmp_path)  # the same disk and moment as the rounds
        stage_line = (f"Maildir file       {stage_wall:8.0f} us a message on this disk, {stage_system:.0f} us of it "
                      f"system CPU (create, write, fsync, rename; one thread): bare aiosmtpd stores nothing")
        if args.only == "serve":
            stop(serve)
            stop(bare)
            total = CLIENTS * MESSAGES
            print(f"serve {total / smtp_time:.1f} messages/s, bare aiosmtpd {total / bare_time:.1f}/s: "
                  f"{bare_time / smtp_time:.2f}x (per round: {', '.join(f'{r:.2f}x' for r in ratios)}); "
                  f"server CPU {1000 * serve_cpu / total:.2f} ms a message, bare {1000 * bare_cpu / total:.2f} ms")
            print(stage_line)
            return
        cpu0 = cpu_seconds(serve.pid)
        auth_time = auth_load(serve_port)  # repeat logins: the AUTH cache answers after the first
        auth_cpu = cpu_seconds(serve.pid) - cpu0
        stop(serve)
        cold_port = free_port()
        cold = start([binary, "serve", "--submission", f"127.0.0.1:{cold_port}", "--smtps", "127.0.0.1:0",
                      "--maildir", str(tmp_path / "maildir"), "--auth-cache-size", "0"], env, "event=ready")
        cpu0 = cpu_seconds(cold.pid)
        cold_time = auth_load(cold_port)  # every login one argon2id verify
        cold_cpu = cpu_seconds(cold.pid) - cpu0
        stop(cold)

        cpu0 = cpu_seconds(bare.pid)
        bare_auth = auth_load(bare_port)
        bare_auth_cpu = cpu_seconds(bare.pid) - cpu0
        stop(bare)

        policy_port = free_port()
        policy = start([binary, "policy", "serve", "--listen", f"127.0.0.1:{policy_port}"], env, "event=listening")
        policy_time, policy_cpu = policy_rounds([policy], [policy_port], args.rounds)
        stop(policy)
        fsync_ms = commit_floor(tmp_path)
        peer_time = policyd_rate_limit(tmp_path)

        total = CLIENTS * MESSAGES
        print(f"{CLIENTS} clients x {MESSAGES} messages x {RECIPIENTS} recipients ({total} messages), "
              f"{ROUNDS} rounds against each server in turns, medians; {os.cpu_count()} cores")
        print(f"smtpctl serve      {total / smtp_time:8.1f} messages/s  ({smtp_time:.2f} s)")
        print(f"bare aiosmtpd      {total / bare_time:8.1f} messages/s  ({bare_time:.2f} s)  "
              f"-> serve reaches {100 * bare_time / smtp_time:.0f}% of the ceiling (per round: "
              f"{', '.join(f'{r:.2f}x' for r in ratios)})")
        print(f"server CPU/message {1000 * serve_cpu / total:8.2f} ms smtpctl serve, {1000 * bare_cpu / total:.2f} ms bare "
              f"(steadier than messages/s on a busy machine)")
        print(stage_line)
        handshakes = CLIENTS * 5
        print(f"AUTH handshakes    {handshakes / auth_time:8.1f} /s smtpctl serve, repeat logins (AUTH cache), "
              f"{handshakes / bare_auth:.1f} /s bare (no password check) -> {bare_auth / auth_time:.2f}x; "
              f"server CPU {1000 * auth_cpu / handshakes:.1f} ms vs bare {1000 * bare_auth_cpu / handshakes:.1f} ms")
        print(f"                   {handshakes / cold_time:8.1f} /s smtpctl serve, every login verified "
              f"(argon2id, --auth-cache-size 0) -> {bare_auth / cold_time:.2f}x; "
              f"server CPU {1000 * cold_cpu / handshakes:.1f} ms")
        print(f"policy requests    {CLIENTS * 200 / policy_time:8.1f} /s at END-OF-MESSAGE, each metered durably; "
              f"server CPU {1000 * policy_cpu / (CLIENTS * 200):.2f} ms/request (median of {args.rounds} rounds)")
        summary.record("serve messages/s (Maildir, each checked and billed)", f"{total / smtp_time:.0f}/s",
                       f"bare aiosmtpd {total / bare_time:.0f}/s", f"{bare_time / smtp_time:.2f}x", ">= 0.6x",
                       bare_time / smtp_time >= 0.6)
        summary.record("serve AUTH/s, repeat logins", f"{handshakes / auth_time:.0f}/s",
                       f"bare aiosmtpd {handshakes / bare_auth:.0f}/s", f"{bare_auth / auth_time:.2f}x", ">= 0.5x",
                       bare_auth / auth_time >= 0.5)
        summary.record("serve AUTH, first login", f"{1000 * cold_cpu / handshakes:.0f} ms CPU", "", "",
                       "one argon2id verify", None)
        summary.record(f"policy requests/s, {CLIENTS} clients, metered durably", f"{CLIENTS * 200 / policy_time:,.0f}/s",
                       "" if peer_time is None else f"policyd-rate-limit {CLIENTS * 200 / peer_time:,.0f}/s",
                       "" if peer_time is None else f"{peer_time / policy_time:.2f}x", ">= 5,000/s",
                       CLIENTS * 200 / policy_time >= 5000)
        print(f"durable commit     {fsync_ms:8.2f} ms on this disk (SQLite WAL, synchronous=FULL): with {CLIENTS} "
              f"clients and one request each in flight, group commit caps policy at ~{CLIENTS / fsync_ms * 1000:,.0f}/s")
        if peer_time is None:
            print("policyd-rate-limit (not installed: pip install policyd-rate-limit in a venv of its own and set "
                  "POLICYD_RATE_LIMIT to its executable)")
        else:
            print(f"policyd-rate-limit {CLIENTS * 200 / peer_time:8.1f} /s at DATA (count_mode 1, SQLite), "
                  f"-> smtpctl is {peer_time / policy_time:.2f}x")


POLICY_ROUNDS = 5
_policy_round = [0]  # each round meters new message ids (a repeated id is a duplicate: another path)


def policy_rounds(procs: list[subprocess.Popen], ports: list[int], rounds: int) -> tuple[float, float]:
    """Median seconds and median server CPU seconds of ``rounds`` policy loads."""
    seen = [policy_round(procs, ports) for _ in range(rounds)]
    return statistics.median(s[0] for s in seen), statistics.median(s[1] for s in seen)


def policy_round(procs: list[subprocess.Popen], ports: list[int]) -> tuple[float, float]:
    """One policy load spread over ``ports``: its seconds and the servers' CPU seconds in all."""
    cpu0, own0 = sum(cpu_seconds(p.pid) for p in procs), own_cpu()
    seconds = policy_load(ports)
    _client_cpu.append(own_cpu() - own0)
    return seconds, sum(cpu_seconds(p.pid) for p in procs) - cpu0


_client_cpu: list[float] = []  # this process's CPU per round: the clients share the machine with the server


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def policy_only(binary: str, rounds: int, before: str | None, counts: tuple[int, ...] = (1,)) -> None:
    """The policy figures alone; with ``before``, two builds' servers loaded in turns. Each
    of ``counts`` is a setup of its own in the turns: that many servers of the build on one
    store, the clients spread over them."""
    builds = {"after": binary, "before": before} if before else {"this build": binary}
    setups = {(name if len(counts) == 1 else f"{name}, {n} server{'s' if n > 1 else ''}"): (exe, n)
              for name, exe in builds.items() for n in counts}
    requests = CLIENTS * 200
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[str, tuple[list[subprocess.Popen], list[int]]] = {}
        try:
            for i, (name, (exe, n)) in enumerate(setups.items()):
                folder = Path(tmp) / f"setup{i}"
                folder.mkdir()
                env = isolated_env(folder, folder / "bench.db")
                provision(exe, str(folder / "bench.db"), env, folder)
                servers[name] = ([], [])
                for _ in range(n):
                    port = free_port()
                    servers[name][1].append(port)
                    servers[name][0].append(start([exe, "policy", "serve", "--listen", f"127.0.0.1:{port}"], env,
                                                  "event=listening"))
            seen: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
            for r in range(rounds):
                order = list(servers.items())
                for name, (procs, ports) in order if r % 2 == 0 else order[::-1]:
                    seen[name].append(policy_round(procs, ports))
        finally:
            for procs, _ in servers.values():
                for proc in procs:
                    stop(proc)
        fsync_ms = commit_floor(Path(tmp))
    print(f"policy serve, {CLIENTS} clients x 200 requests at END-OF-MESSAGE, each metered durably; "
          f"{rounds} rounds{' in turns' if len(setups) > 1 else ''}, medians; {os.cpu_count()} cores")
    width = max(len(name) for name in setups)
    for name, rows in seen.items():
        rates = sorted(requests / s for s, _ in rows)
        cpus = sorted(1000 * c / requests for _, c in rows)
        print(f"{name:{width}} {requests / statistics.median(s for s, _ in rows):8.1f} /s "
              f"(rounds {rates[0]:,.0f}-{rates[-1]:,.0f}); server CPU "
              f"{1000 * statistics.median(c for _, c in rows) / requests:.3f} ms/request "
              f"({cpus[0]:.3f}-{cpus[-1]:.3f})  {setups[name][0]}")
    print(f"client CPU {1000 * statistics.median(_client_cpu) / requests:.3f} ms/request (the {CLIENTS} client "
          f"threads of this process, on the same {os.cpu_count()} cores)")
    print(f"durable commit     {fsync_ms:8.2f} ms on this disk (SQLite WAL, synchronous=FULL)")


LOGINS = [f"u{i}@bench.example" for i in range(5)]  # the most one domain holds; clients use them over again


def provision(binary: str, db: str, env: dict[str, str], folder: Path) -> None:
    """The benchmarks' store: one account without a practical limit, one domain, five credentials."""
    (folder / "pw").write_text(PW + "\n")
    doc = ('[[agencies]]\nname = "bench"\n[[accounts]]\nname = "bench"\nagency = "bench"\n'
           'daily_limit = 100000000\n[[domains]]\nname = "bench.example"\naccount = "bench"\n'
           + "".join(f'[[credentials]]\nlogin = "{login}"\npassword_file = "{folder / "pw"}"\n' for login in LOGINS))
    subprocess.run([binary, "--db", db, "apply", "-"], input=doc, env=env, check=True, capture_output=True, text=True)


def start(cmd: list[str], env: dict[str, str], ready: str) -> subprocess.Popen:
    """Start a server and wait for its ready line; its log is drained in the background."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if ready in line:
            break
    else:
        raise SystemExit(f"{cmd[0]} did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc


POLICYD_CONFIG = """\
debug: False
user: "nobody"
group: "nogroup"
pidfile: "{dir}/policyd.pid"
backend: 0
sqlite_config:
    database: "{dir}/policyd.sqlite3"
SOCKET: ["127.0.0.1", {port}]
limits:
    - [100000000, 86400]
limits_by_id: {{}}
sql_limits_by_id: ""
limited_networks: []
db_error_action: "dunno"
report: False
delay_to_close: 300
limit_by_sasl: True
limit_by_sender: False
limit_by_ip: False
success_action: "dunno"
fail_action: "defer_if_permit Rate limit reach, retry later"
count_mode: 1
"""


def policyd_rate_limit(tmp_path: Path) -> float | None:
    """The peer: policyd-rate-limit (SQLite backend, counting recipients at
    DATA), under the same load, when POLICYD_RATE_LIMIT or PATH has it."""
    binary = os.environ.get("POLICYD_RATE_LIMIT") or shutil.which("policyd-rate-limit")
    if not binary:
        return None
    folder = tmp_path / "policyd"
    folder.mkdir()
    folder.chmod(0o777)  # it drops privileges to nobody when started as root
    tmp_path.chmod(0o711)  # ... who must reach its folder
    port = free_port()
    config = folder / "policyd.yaml"
    config.write_text(POLICYD_CONFIG.format(dir=folder, port=port))
    proc = subprocess.Popen([binary, "--file", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(folder / "policyd.log", "w"))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        try:
            return policy_load(port, state="DATA")
        except OSError as exc:
            raise SystemExit(f"policyd-rate-limit failed ({exc}): {(folder / 'policyd.log').read_text()}") from None
    finally:
        stop(proc)


def commit_floor(tmp_path: Path, commits: int = 200) -> float:
    """Milliseconds one durable SQLite commit takes on the disk the store is on: the floor under
    every metered answer, and what group commit divides among the clients waiting."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x)")
    start = time.perf_counter()
    for i in range(commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter() - start) / commits * 1000


def stage_floor(tmp_path: Path, files: int = 500) -> tuple[float, float]:
    """Microseconds of wall time and of system CPU one Maildir message costs on this disk, one
    thread, the servers idle: create, write (the benchmark's message), fsync, close, rename,
    as ``serve`` stages and publishes. On ext4 it moves with the disk's recent past: inodes freed
    in the last minutes are scanned past at every create (``recently_deleted`` in a profile)."""
    folder = tmp_path / "stage-floor"
    (folder / "tmp").mkdir(parents=True)
    (folder / "new").mkdir()
    data = ("Received: x\r\n" + BODY.format(0)).encode()
    system, start = os.times().system, time.perf_counter()
    for i in range(files):
        fd = os.open(folder / "tmp" / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(folder / "tmp" / str(i), folder / "new" / str(i))
    wall, system = time.perf_counter() - start, os.times().system - system
    return 1e6 * wall / files, 1e6 * system / files


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def _login(i: int) -> str:
    return f"u{i % 5}@bench.example"


def send_load(port: int) -> float:
    """Seconds to send every message, timed from when all clients have authenticated."""
    started: list[float] = []
    barrier = threading.Barrier(CLIENTS, action=lambda: started.append(time.perf_counter()))

    def one(i: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
            c.starttls(context=CLIENT_TLS)
            c.login(_login(i), PW)
            barrier.wait()
            for m in range(MESSAGES):
                c.sendmail(_login(i), [f"r{m}-{k}@x.test" for k in range(RECIPIENTS)], BODY.format(i))

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS)))
    return time.perf_counter() - started[0]


def auth_load(port: int, per_client: int = 5) -> float:
    def one(i: int) -> None:
        for _ in range(per_client):
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
                c.starttls(context=CLIENT_TLS)
                c.ehlo()  # smtplib forgets the EHLO at STARTTLS, and c.auth() does not send it again:
                c.user, c.password = _login(i), PW  # without it every AUTH got "503 send EHLO first"
                code, reply = c.auth("PLAIN", c.auth_plain)
                assert code == 235, (code, reply)  # c.auth() returns a refusal instead of raising

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS)))
    return time.perf_counter() - start


def policy_load(port: int | list[int], per_client: int = 200, state: str = "END-OF-MESSAGE") -> float:
    """Seconds for CLIENTS connections of ``per_client`` requests each (client i on the i-th port, in turn)."""
    ports = [port] if isinstance(port, int) else port
    request = ("request=smtpd_access_policy\nprotocol_state=" + state + "\nsasl_username={0}\n"
               "sender={0}\nclient_address=127.0.0.1\nrecipient_count=3\ninstance=b{3}.{1}.{2}\n"
               "queue_id=Q{1}X{2}\n\n")
    _policy_round[0] += 1
    run = _policy_round[0]

    def one(i: int) -> None:
        with socket.create_connection(("127.0.0.1", ports[i % len(ports)])) as conn:
            stream = conn.makefile("rwb")
            for n in range(per_client):
                stream.write(request.format(_login(i), i, n, run).encode())
                stream.flush()
                answer = stream.readline()
                assert answer.lower().startswith(b"action=dunno"), answer
                stream.readline()

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS)))
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
