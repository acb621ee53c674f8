"""Two builds of `smtpctl serve` side by side, interleaved: what one AUTH costs.

    git worktree add /tmp/before <commit> && python3 -m venv /tmp/before/.venv \
        && /tmp/before/.venv/bin/pip install -q -e /tmp/before
    python benchmarks/ab_auth.py --before /tmp/before/.venv/bin/smtpctl [--after "$(which smtpctl)"] \
        [--runs 4] [--cold] [--pg postgresql://...]

For each run and each build: a fresh store (an SQLite file, or with --pg a
fresh database on that server) with five credentials, `serve`, then 10
clients each doing 30 handshakes (--handshakes) (connect, STARTTLS, EHLO, AUTH PLAIN, QUIT)
as repeat logins: every login verified once before the clock starts, so the
AUTH cache answers (with --cold, `--auth-cache-size 0` and 3 handshakes per
client: every AUTH one argon2id verify). Prints the median AUTH/s and server
CPU per AUTH (user + system time of the server process, from /proc: steadier
than wall time on a busy machine).

    python benchmarks/ab_auth.py --store-calls [--pg postgresql://...]

prints instead what the store calls of one AUTH cost this build, in CPU
time of this process (no server, no TLS): the credential read every AUTH
does, the throttle's check beside it, and a guess's reserve + settle (two
write transactions, before and after a verify). Never run as a test.
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serve import CLIENT_TLS, LOGINS, PW, cpu_seconds, free_port, provision  # noqa: E402
from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

CLIENTS = 10


def handshake(port: int, login: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
        c.starttls(context=CLIENT_TLS)
        c.ehlo()
        c.user, c.password = login, PW
        code, reply = c.auth("PLAIN", c.auth_plain)
        assert code == 235, (code, reply)


def fresh_database(base: str) -> str:
    import psycopg

    name = f"ab_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def one_run(binary: str, cold: bool, pg: str | None, per_client: int) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp())
    try:
        db = fresh_database(pg) if pg else str(folder / "bench.db")
        env = dict(isolated_env(folder, db), XDG_DATA_HOME=str(folder))  # a PostgreSQL store: TLS pair here
        provision(binary, db, env, folder)
        port = free_port()
        proc = subprocess.Popen([binary, "--db", db, "serve", "--submission", f"127.0.0.1:{port}", "--smtps",
                                 "127.0.0.1:0", "--maildir", str(folder / "maildir"),
                                 *(["--auth-cache-size", "0"] if cold else [])],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if "event=ready" in line:
                break
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        try:
            for login in LOGINS:
                handshake(port, login)  # the first login of each: a verify, before the clock starts
            start, cpu0 = time.perf_counter(), cpu_seconds(proc.pid)
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(lambda i: [handshake(port, LOGINS[i % len(LOGINS)]) for _ in range(per_client)],
                              range(CLIENTS)))
            wall, cpu = time.perf_counter() - start, cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        total = CLIENTS * per_client
        return total / wall, 1000 * cpu / total
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def store_calls(pg: str | None, calls: int = 2000) -> None:
    from smtpctl.core.store import Store, throttle

    folder = Path(tempfile.mkdtemp())
    try:
        db = fresh_database(pg) if pg else str(folder / "bench.db")
        provision(smtpctl(), db, dict(isolated_env(folder, db), XDG_DATA_HOME=str(folder)), folder)
        limits = throttle.Limits(5, 10, 300.0)
        with Store.open(db) as store:
            def cost(fn) -> float:
                start = time.process_time()
                for i in range(calls):
                    fn(i)
                return 1e6 * (time.process_time() - start) / calls

            def guess(i: int) -> None:
                verdict = throttle.reserve(store, f"10.0.{i // 250}.{i % 250}", LOGINS[0], limits)
                throttle.settle(store, verdict.attempt, failed=False)

            read = cost(lambda i: store.credential(LOGINS[i % len(LOGINS)]))
            check = cost(lambda i: throttle.check(store, "127.0.0.1", LOGINS[i % len(LOGINS)], limits))
            written = cost(guess)
        print(f"{'PostgreSQL' if pg else 'SQLite'}, CPU of this process per call ({calls} calls each):")
        print(f"  credential read  {read:7.1f} us  (every AUTH, before and after)")
        print(f"  throttle check   {check:7.1f} us  (every AUTH that reaches the store, beside the read)")
        print(f"  reserve + settle {written:7.1f} us  (a guess only: before and after its ~40 ms argon2id verify)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the smtpctl executable of the build to compare with")
    parser.add_argument("--after", default=smtpctl(), help="this build's smtpctl (default: the one beside python)")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--cold", action="store_true", help="every AUTH verified (--auth-cache-size 0)")
    parser.add_argument("--pg", help="a PostgreSQL DSN whose user may create databases: run on PostgreSQL")
    parser.add_argument("--handshakes", type=int, help="per client and run (default 30, 3 with --cold)")
    parser.add_argument("--store-calls", action="store_true", help="the store calls of one AUTH, this build")
    args = parser.parse_args()
    if args.store_calls:
        store_calls(args.pg)
        return
    if not args.before:
        parser.error("--before is required (or --store-calls)")
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for _ in range(args.runs):
        for name in ("before", "after"):  # interleaved: both builds see the same machine load
            results[name].append(one_run(getattr(args, name), args.cold, args.pg,
                                         args.handshakes or (3 if args.cold else 30)))
    kind = "every AUTH verified" if args.cold else "repeat logins (AUTH cache)"
    print(f"{CLIENTS} clients, {kind}, {'PostgreSQL' if args.pg else 'SQLite'}, {args.runs} interleaved runs")
    for name, runs in results.items():
        rates, cpus = [r for r, _ in runs], [c for _, c in runs]
        print(f"{name:7} median {statistics.median(rates):7.1f} AUTH/s  "
              f"server CPU {statistics.median(cpus):6.2f} ms/AUTH  "
              f"(runs: {', '.join(f'{c:.2f}' for c in cpus)} ms)")


if __name__ == "__main__":
    main()
