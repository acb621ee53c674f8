"""What every case of benchmarks/run.py shares: builds, processes, stores, loads, the table.

Every figure is taken from the installed ``smtpctl`` command (or another
build's, ``--smtpctl``) run as a process, so the benchmarks do not depend on
where a module lives inside the package. Linux only (/proc, os.wait4).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# --- builds -------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """One smtpctl to measure: a label for the table and the command that runs it."""

    label: str
    command: str


def installed_smtpctl() -> str:
    """The smtpctl of the interpreter running the benchmarks (its venv), else the one on PATH."""
    local = Path(sys.executable).parent / "smtpctl"
    return str(local) if local.exists() else (shutil.which("smtpctl") or "smtpctl")


# --- processes ----------------------------------------------------------------


def isolated_env(folder: Path, db: Path | None = None) -> dict[str, str]:
    """The environment of every smtpctl run: an empty client config in ``folder`` (never the
    user's), the store ``db`` when given, and bytecode cached in a private folder, as a wheel
    installed by pip has it (this machine sets PYTHONDONTWRITEBYTECODE, under which an editable
    install would compile smtpctl's source on every run: ~0.1 s that no user pays)."""
    config = folder / "none.toml"
    config.write_text("")
    env = dict(os.environ, SMTPCTL_CONFIG=str(config), PYTHONPYCACHEPREFIX=str(folder / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("COLUMNS", None)  # tables off a terminal are 200 columns wide
    env.pop("SMTPCTL_DB", None)
    if db is not None:
        env["SMTPCTL_DB"] = str(db)
    return env


def run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    """Run a set-up command; its stdout, or exit with its stderr when it fails."""
    out = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr[-800:]}")
    return out.stdout


@dataclass
class Sample:
    wall: float  # seconds
    cpu: float  # seconds, user + system of the process
    rss: int  # KiB, peak resident set
    stdout: bytes = b""


def measure(cmd: list[str], env: dict[str, str], keep_stdout: bool = False) -> Sample:
    """Wall time, CPU time and peak RSS of one whole process (``os.wait4``: its own usage only)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    out = proc.stdout.read() if keep_stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.stdout:
        proc.stdout.close()
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {err.decode(errors='replace')[-800:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out)


def median(samples: list[Sample], what: str = "wall") -> float:
    return statistics.median(getattr(s, what) for s in samples)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a running process has used so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], ready: str) -> subprocess.Popen:
    """Start a server and wait for its ready line; its log is drained in the background."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ready in line:
            break
    else:
        raise SystemExit(f"{' '.join(cmd)} did not start: {''.join(seen)[-800:]}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc


def wait_for_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- stores, made through `smtpctl apply` ----------------------------------------

PW = "benchmark-password-123"
# An adopted SHA512-CRYPT hash (docs/apply.md, password_hash): a credential that costs
# no argon2id hash to create. Only the import and listing stores use it; nothing logs in.
ADOPTED_HASH = ("$6$V2HF8dFfHQzAvi/C$edjvwlr4sfMWlZ/CVAB7189ALdhGUGQVHP2rjBkAWHWS0nVJtcFYZ"
                "LlbnQVuTqAABLV9HtX96babnzPeQY2yj0")


def apply(build: Build, env: dict[str, str], doc: str) -> None:
    run([build.command, "apply", "-"], env, stdin=doc)


def accounts_doc(accounts: int, credentials_per_account: int = 1, limit: int = 100_000_000) -> tuple[str, list[str]]:
    """An apply file: one agency, ``accounts`` accounts (acct00000...), and unless
    ``credentials_per_account`` is 0 each account's dedicated domain (d00000.example...) with
    that many credentials u0@, u1@...; returns it and the logins."""
    lines = ['version = 1', '[[agencies]]', 'name = "bench"']
    for a in range(accounts):
        lines += ["[[accounts]]", f'name = "acct{a:05d}"', 'agency = "bench"', f"daily_limit = {limit}"]
    logins = []
    for a in range(accounts if credentials_per_account else 0):
        lines += ["[[domains]]", f'name = "d{a:05d}.example"', f'account = "acct{a:05d}"']
        for c in range(credentials_per_account):
            logins.append(f"u{c}@d{a:05d}.example")
            lines += ["[[credentials]]", f'login = "{logins[-1]}"', f"password_hash = '{ADOPTED_HASH}'"]
    return "\n".join(lines) + "\n", logins


LIVE_LOGINS = [f"u{i}@bench.example" for i in range(5)]  # the live loads' clients use them in turn


def live_store(build: Build, env: dict[str, str], folder: Path) -> None:
    """The live servers' store: one account without a practical limit, one domain, five
    credentials with a real password (five argon2id hashes)."""
    (folder / "pw").write_text(PW + "\n")
    doc = ('[[agencies]]\nname = "bench"\n[[accounts]]\nname = "bench"\nagency = "bench"\n'
           'daily_limit = 100000000\n[[domains]]\nname = "bench.example"\naccount = "bench"\n'
           + "".join(f'[[credentials]]\nlogin = "{login}"\npassword_file = "{folder / "pw"}"\n'
                     for login in LIVE_LOGINS))
    apply(build, env, doc)


# --- live loads: threads of this process, the same for every server ----------------

CLIENTS = 10


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


# One context for every client connection, as a real submitting application keeps:
# building one costs ~16 ms of client CPU and would hide the server's AUTH cost.
CLIENT_TLS = _client_tls()
BODY = "From: {0}\r\nTo: a@x.test\r\nSubject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * 26


def login(i: int) -> str:
    return LIVE_LOGINS[i % len(LIVE_LOGINS)]


def send_load(port: int, messages: int, recipients: int = 3) -> float:
    """Seconds for CLIENTS connections to send ``messages`` each, timed from when all have logged in."""
    started: list[float] = []
    barrier = threading.Barrier(CLIENTS, action=lambda: started.append(time.perf_counter()))

    def one(i: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
            c.starttls(context=CLIENT_TLS)
            c.login(login(i), PW)
            barrier.wait()
            for m in range(messages):
                c.sendmail(login(i), [f"r{m}-{k}@x.test" for k in range(recipients)], BODY.format(login(i)))

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS)))
    return time.perf_counter() - started[0]


def auth_load(port: int, per_client: int) -> float:
    """Seconds for CLIENTS clients to make ``per_client`` handshakes each: connect, STARTTLS,
    EHLO, AUTH PLAIN (235 asserted), QUIT."""
    def one(i: int) -> None:
        for _ in range(per_client):
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
                c.starttls(context=CLIENT_TLS)
                c.ehlo()  # smtplib forgets the EHLO at STARTTLS and c.auth() does not send it again
                c.user, c.password = login(i), PW
                code, reply = c.auth("PLAIN", c.auth_plain)
                assert code == 235, (code, reply)  # c.auth() returns a refusal instead of raising

    start_at = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS)))
    return time.perf_counter() - start_at


_policy_round = [0]  # each load meters new message ids (a repeated id is the duplicate path)


def policy_load(port: int, per_client: int, state: str = "END-OF-MESSAGE") -> float:
    """Seconds for CLIENTS connections of ``per_client`` policy requests each, each answered dunno."""
    request = ("request=smtpd_access_policy\nprotocol_state=" + state + "\nsasl_username={0}\n"
               "sender={0}\nclient_address=127.0.0.1\nrecipient_count=3\ninstance=b{3}.{1}.{2}\n"
               "queue_id=Q{1}X{2}\n\n")
    _policy_round[0] += 1
    round_id = _policy_round[0]

    def one(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            stream = conn.makefile("rwb")
            for n in range(per_client):
                stream.write(request.format(login(i), i, n, round_id).encode())
                stream.flush()
                answer = stream.readline()
                assert answer.lower().startswith(b"action=dunno"), answer
                stream.readline()

    start_at = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS)))
    return time.perf_counter() - start_at


def loaded(proc: subprocess.Popen, load) -> tuple[float, float]:
    """Seconds a load takes and the server's CPU seconds meanwhile."""
    cpu0 = cpu_seconds(proc.pid)
    seconds = load()
    return seconds, cpu_seconds(proc.pid) - cpu0


# --- peers and floors -----------------------------------------------------------

# The ceiling for serve: aiosmtpd with the same STARTTLS, an AUTH that accepts anything and a
# handler that stores nothing.
BARE_AIOSMTPD = r'''
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


def policyd_rate_limit() -> str | None:
    """The policy peer's executable: POLICYD_RATE_LIMIT, else PATH (pip install
    policyd-rate-limit in a venv of its own)."""
    return os.environ.get("POLICYD_RATE_LIMIT") or shutil.which("policyd-rate-limit")


def start_policyd(binary: str, folder: Path) -> tuple[subprocess.Popen, int]:
    """policyd-rate-limit with its SQLite backend, counting recipients at DATA (count_mode 1).
    ``folder`` is a new folder, whose parents ``nobody`` may pass through."""
    folder.mkdir()
    folder.chmod(0o777)  # it drops privileges to nobody when started as root
    port = free_port()
    config = folder / "policyd.yaml"
    config.write_text(POLICYD_CONFIG.format(dir=folder, port=port))
    with open(folder / "policyd.log", "w") as log:
        proc = subprocess.Popen([binary, "--file", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    wait_for_port(port)
    return proc, port


def commit_floor(folder: Path, commits: int = 200) -> float:
    """Milliseconds of one durable SQLite commit (WAL, synchronous=FULL) on this disk: the
    floor under every metered answer, which group commit shares among the clients waiting."""
    import sqlite3

    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x)")
    start_at = time.perf_counter()
    for i in range(commits):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter() - start_at) / commits * 1000


def maildir_floor(folder: Path, files: int = 500) -> float:
    """Microseconds one Maildir message costs on this disk, one thread: create, write, fsync,
    close, rename, as serve stages and publishes (bare aiosmtpd stores nothing). On ext4 it
    moves with what the disk deleted in the minutes before."""
    (folder / "tmp").mkdir(parents=True)
    (folder / "new").mkdir()
    data = ("Received: x\r\n" + BODY.format(LIVE_LOGINS[0])).encode()
    start_at = time.perf_counter()
    for i in range(files):
        fd = os.open(folder / "tmp" / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(folder / "tmp" / str(i), folder / "new" / str(i))
    return 1e6 * (time.perf_counter() - start_at) / files


# --- the one table ---------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a figure of one build, against a peer or a floor of the same run."""

    case: str
    figure: str
    build: str
    value: str
    peer: str = ""
    ratio: str = ""
    goal: str = ""
    met: bool | None = None
    rate: float | None = None  # the value as a rate (higher is better), to compare builds by wall time
    cpu_rate: float | None = None  # the same per CPU second: steadier on a machine other work shares


def ratio_row(case: str, figure: str, build: str, value: str, peer: str, ratio: float, goal: float | None,
              lower_is_better: bool, rate: float | None = None, cpu_rate: float | None = None) -> Row:
    """A row whose goal is a ratio: at most ``goal`` (times, lower is better) or at least."""
    if goal is None:
        return Row(case, figure, build, value, peer, f"{ratio:.2f}x", "", None, rate, cpu_rate)
    met = ratio <= goal if lower_is_better else ratio >= goal
    return Row(case, figure, build, value, peer, f"{ratio:.2f}x", f"{'<=' if lower_is_better else '>='} {goal}x",
               met, rate, cpu_rate)


def print_table(rows: list[Row], builds: list[Build]) -> None:
    """The table: each figure, its peer or floor, the ratio, the goal; with several builds, each
    build's row under the first's, the first's carrying how it compares with each other build, by
    wall time and by CPU time (of the process, or of the server under load)."""
    heads = ["figure", "build", "value", "peer or floor (same run)", "ratio", "goal", "met"]
    compare = len(builds) > 1
    if compare:
        heads.append(f"{builds[0].label} vs other: wall, CPU (+: faster)")
    by_figure: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        by_figure.setdefault((row.case, row.figure), {})[row.build] = row
    order = list(by_figure)
    rows = sorted(rows, key=lambda row: order.index((row.case, row.figure)))  # each figure's builds together
    table = []
    for row in rows:
        cells = [row.figure, row.build, row.value, row.peer, row.ratio, row.goal,
                 "" if row.met is None else ("yes" if row.met else "NO")]
        if compare:
            changes = []
            if row.build == builds[0].label and row.rate:
                for other in builds[1:]:
                    them = by_figure[(row.case, row.figure)].get(other.label)
                    if them is not None and them.rate:  # rates, higher is better: + means faster
                        change = f"{100 * (row.rate / them.rate - 1):+.0f}%"
                        if row.cpu_rate and them.cpu_rate:
                            change += f", {100 * (row.cpu_rate / them.cpu_rate - 1):+.0f}%"
                        changes.append(f"{change} vs {other.label}")
            cells.append(", ".join(changes))
        table.append(cells)
    widths = [max([len(h)] + [len(c[i]) for c in table]) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for cells in table:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
