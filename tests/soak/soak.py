"""The fleet soak (issue 23): two `serve` and two `policy serve` nodes on one
throw-away PostgreSQL, mixed load, kill -9 of random nodes and one PostgreSQL
restart, then the invariants checked and printed (docs/servers.md, "The fleet soak").

    python -m tests.soak.soak --duration 120 --seed 7

Exit 0 when every invariant holds, 1 when one fails, 2 when the soak itself broke."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import smtpctl_binary
from tests.e2e.servers import Running
from tests.e2e.test_policy_hostile import request as policy_request

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Correct-Horse-Battery-Staple-42"
GRACE = 10.0  # seconds after PostgreSQL is back during which a temporary refusal is still expected
POLICY_RETRY_FOR = 60.0  # how long a policy client keeps asking again after a lost answer (Postfix retries)
LIMIT_AUDIT = "account.limit_exceeded"  # smtpctl/core/metering/enforcement.py


@dataclass(frozen=True)
class Account:
    name: str
    limit: int
    domain: str
    logins: tuple[str, ...]


ACCOUNTS = (
    Account("small", 150, "small.test", ("app@small.test",)),
    Account("medium", 400, "medium.test", ("app@medium.test", "web@medium.test")),
    Account("large", 1_000_000, "large.test", ("app@large.test", "web@large.test")),
)
WEIGHT = {"small": 1, "medium": 2, "large": 6}
ACCOUNT_OF = {login: account.name for account in ACCOUNTS for login in account.logins}


@dataclass
class Reply:
    """One answer the load got: ``kind`` is smtp, policy or cli; ``code`` the SMTP code, the
    policy action's first word, or the CLI's exit code; ``temporary`` a 4xx / DEFER (not a lost connection)."""

    at: float
    kind: str
    node: str
    account: str
    code: str
    text: str
    temporary: bool


@dataclass
class Journal:
    replies: list[Reply] = field(default_factory=list)
    policy_passed: dict[str, tuple[str, int]] = field(default_factory=dict)  # instance -> (account, recipients)
    policy_lost: list[str] = field(default_factory=list)  # instances never answered despite retries
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, reply: Reply) -> None:
        with self.lock:
            self.replies.append(reply)


class Cluster:
    """A throw-away PostgreSQL cluster made with .ci/pg, stopped and started with pg_ctl."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="smtpctl-soak-pg-"))  # short: the socket lives here
        os.chmod(self.base, 0o755)
        self.dir = self.base / "c"
        started = subprocess.run(["bash", str(ROOT / ".ci" / "pg"), "start", str(self.dir)],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f".ci/pg start failed: {started.stderr}")
        self.admin_dsn = started.stdout.strip().split("=", 1)[1].strip("'")
        self.as_user = ["runuser", "-u", "nobody", "--"] if os.getuid() == 0 else []
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        self.pg_ctl = str(found[-1]) if found else (shutil.which("pg_ctl") or "pg_ctl")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.admin_dsn.replace("/postgres?", f"/{name}?")

    def ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.dir / "data"), "-w", *args],
                       check=True, capture_output=True)

    def stop_immediate(self) -> None:
        self.ctl("-m", "immediate", "stop")

    def start(self) -> None:
        self.ctl("-l", str(self.dir / "server.log"), "-o",
                 f"-k {self.dir} -c listen_addresses='' -c max_connections=200 -c fsync=off", "start")

    def remove(self) -> None:
        subprocess.run(["bash", str(ROOT / ".ci" / "pg"), "stop", str(self.dir)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Node:
    """One slot of the fleet: its arguments stay the same across restarts (same Maildir)."""

    name: str
    args: list[str]
    work: Path
    env: dict[str, str]
    running: Running | None = None
    generation: int = 0
    kills: int = 0

    def start(self) -> None:
        self.generation += 1
        self.running = Running(self.args, self.work / f"{self.name}.{self.generation}.log", env=self.env)

    def address(self, listener: str) -> tuple[str, int] | None:
        running = self.running
        return running.addresses.get(listener) if running is not None else None

    def kill9(self) -> None:
        assert self.running is not None
        self.running.proc.send_signal(signal.SIGKILL)
        self.running.proc.wait(timeout=20)
        self.running.handle.close()
        self.running = None
        self.kills += 1

    def stop(self) -> int:
        running, self.running = self.running, None
        return running.stop() if running is not None else 0


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([smtpctl_binary(), *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def build_world(env: dict[str, str]) -> None:
    def ok(*args: str, stdin: str | None = None) -> None:
        done = cli(env, *args, stdin=stdin)
        if done.returncode != 0:
            raise RuntimeError(f"smtpctl {' '.join(args)} exited {done.returncode}: {done.stderr}")

    ok("agency", "add", "soak")
    for account in ACCOUNTS:
        ok("account", "add", account.name, "--agency", "soak", "--daily-limit", str(account.limit))
        ok("domain", "add", account.domain, "--account", account.name)
        for login in account.logins:
            ok("user", "create", login, "--password-stdin", stdin=PASSWORD + "\n")


class Load:
    """The mixed load and the chaos, over ``duration`` seconds."""

    def __init__(self, fleet: dict[str, list[Node]], env: dict[str, str], journal: Journal, seed: int,
                 duration: float) -> None:
        self.fleet, self.env, self.journal, self.seed, self.duration = fleet, env, journal, seed, duration
        self.stop_at = 0.0
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE  # serve's self-signed certificate
        self.refused_logins: set[str] = set()  # shared by the SMTP workers (set.add is atomic)
        self.nodes_lock = threading.Lock()  # chaos swaps a node's process; clients read its address

    @staticmethod
    def pick_login(rng: random.Random, refused: set[str]) -> str:
        """A login, the large account's more often (the small ones cross their limits early on)."""
        logins = [login for login in ACCOUNT_OF if login not in refused] or list(ACCOUNT_OF)
        weights = [WEIGHT[ACCOUNT_OF[login]] for login in logins]
        return rng.choices(logins, weights)[0]

    def pick(self, rng: random.Random, kind: str, listener: str, avoid: str = "") -> tuple[str, tuple[str, int] | None]:
        nodes = [n for n in self.fleet[kind] if n.name != avoid] or self.fleet[kind]
        node = rng.choice(nodes)
        with self.nodes_lock:
            return node.name, node.address(listener)

    # -- SMTP through serve ------------------------------------------------------------------
    def smtp_worker(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        n = 0
        while time.monotonic() < self.stop_at:
            login = self.pick_login(rng, self.refused_logins)
            account = ACCOUNT_OF[login]
            node, address = self.pick(rng, "serve", "submission")
            if address is None:
                self.record("smtp", node, account, "conn", "node down", False)
                time.sleep(0.2)
                continue
            try:
                client = smtplib.SMTP(*address, timeout=30)
            except OSError as exc:
                self.record("smtp", node, account, "conn", repr(exc), False)
                time.sleep(0.2)
                continue
            try:
                client.starttls(context=self.tls)
                client.ehlo()
                client.user, client.password = login, PASSWORD
                client.auth("PLAIN", client.auth_plain)  # one attempt (login() would try every mechanism)
                for _ in range(rng.randint(1, 3)):
                    n += 1
                    count = rng.randint(1, 5)
                    recipients = [f"r{k}-{index}-{n}@x.test" for k in range(count)]
                    body = (f"From: {login}\r\nTo: {', '.join(recipients)}\r\nSubject: soak\r\n"
                            f"X-Soak-Id: s{self.seed}-{index}-{n}\r\nX-Soak-Recipients: {count}\r\n"
                            f"X-Soak-Account: {account}\r\n\r\nsoak\r\n")
                    client.sendmail(login, recipients, body)
                    self.record("smtp", node, account, "250", "accepted", False)
                client.quit()
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                self.record("smtp", node, account, str(code), text.decode(errors="replace"), 400 <= code < 500)
            except smtplib.SMTPResponseException as exc:
                code = exc.smtp_code
                if code == 535 or (code == 550 and "revoked" in str(exc.smtp_error)):
                    self.refused_logins.add(login)  # a real client stops using a credential refused for good
                if 400 <= code < 500:
                    time.sleep(0.5)  # a client backs off after a temporary refusal
                self.record("smtp", node, account, str(code), exc.smtp_error.decode(errors="replace")
                            if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error), 400 <= code < 500)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self.record("smtp", node, account, "conn", repr(exc), False)
            finally:
                client.close()

    # -- the policy service ---------------------------------------------------------------------
    def policy_ask(self, address: tuple[str, int], text: str) -> str:
        with socket.create_connection(address, timeout=30) as sock, sock.makefile("rwb") as stream:
            stream.write(text.encode())
            stream.flush()
            answer = stream.readline().decode()
            if not answer.endswith("\n") or stream.readline() != b"\n":
                raise ConnectionError("answer cut short")
            return answer.rstrip("\n")

    def policy_worker(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + 100 + index)
        n = 0
        while time.monotonic() < self.stop_at:
            n += 1
            login = self.pick_login(rng, set())  # Postfix asks about revoked logins too: REJECT
            account = ACCOUNT_OF[login]
            count = rng.randint(1, 5)
            instance = f"soak.{self.seed}.{index}.{n}"
            text = policy_request(sasl_username=login, sender=login, recipient_count=str(count),
                                  instance=instance, queue_id=f"Q{index}X{n}")
            node, given_up = "", time.monotonic() + POLICY_RETRY_FOR
            while True:  # the same request (same instance) again after a lost answer, to another node
                node, address = self.pick(rng, "policy", "policy", avoid=node)
                try:
                    if address is None:
                        raise ConnectionError("node down")
                    answer = self.policy_ask(address, text)
                except OSError as exc:
                    self.record("policy", node, account, "conn", repr(exc), False)
                    if time.monotonic() > given_up:
                        with self.journal.lock:
                            self.journal.policy_lost.append(instance)
                        break
                    time.sleep(0.2)
                    continue
                action = answer.removeprefix("action=").split(" ", 1)[0]
                temporary = action in ("DEFER", "DEFER_IF_PERMIT")
                self.record("policy", node, account, action, answer, temporary)
                if temporary:
                    time.sleep(0.5)  # Postfix defers the message; its client sends it again later
                if action == "DUNNO":
                    with self.journal.lock:
                        self.journal.policy_passed[instance] = (account, count)
                break
            time.sleep(rng.uniform(0, 0.05))

    # -- the CLI ------------------------------------------------------------------------------------
    def cli_worker(self) -> None:
        rng = random.Random(self.seed * 1000 + 999)
        while time.monotonic() < self.stop_at:
            done = cli(self.env, "usage", "status", "--json")
            self.record("cli", "cli", "", str(done.returncode), done.stderr.strip()[:200], False)
            time.sleep(rng.uniform(2, 6))

    def record(self, kind: str, node: str, account: str, code: str, text: str, temporary: bool) -> None:
        self.journal.add(Reply(time.monotonic(), kind, node, account, code, text, temporary))


@dataclass
class Chaos:
    kills: list[tuple[float, str]] = field(default_factory=list)
    pg_down: tuple[float, float] | None = None
    errors: list[str] = field(default_factory=list)


def chaos_plan(rng: random.Random, duration: float) -> list[float]:
    """Kill times: every 60-90 s, scaled down for short runs (120 s: every 20-30 s)."""
    low, high = min(60.0, duration / 6), min(90.0, duration / 4)
    times, t = [], rng.uniform(low, high)
    while t < duration - 5:
        times.append(t)
        t += rng.uniform(low, high)
    return times


def run_chaos(load: Load, cluster: Cluster, rng: random.Random, chaos: Chaos, start: float) -> None:
    events = [(t, "kill") for t in chaos_plan(rng, load.duration)] + [(load.duration / 2, "pg")]
    all_nodes = load.fleet["serve"] + load.fleet["policy"]
    for at, what in sorted(events):
        time.sleep(max(0.0, start + at - time.monotonic()))
        if what == "pg":
            down = time.monotonic()
            cluster.stop_immediate()
            time.sleep(rng.uniform(3, 6))
            cluster.start()
            chaos.pg_down = (down - start, time.monotonic() - start)
            continue
        node = rng.choice(all_nodes)
        with load.nodes_lock:
            node.kill9()
        chaos.kills.append((time.monotonic() - start, node.name))
        time.sleep(rng.uniform(1, 3))
        for _attempt in range(5):
            try:
                node.start()  # outside the lock: readers see the node as down meanwhile
                break
            except AssertionError as exc:
                chaos.errors.append(f"{node.name} did not restart: {str(exc)[:300]}")
                time.sleep(2)


# -- the invariants --------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    ok: bool
    lines: list[str]


def maildir_delivered(maildirs: list[Path]) -> dict[str, int]:
    delivered: dict[str, int] = defaultdict(int)
    for maildir in maildirs:
        for sub in ("new", "cur"):
            folder = maildir / sub
            if not folder.exists():
                continue
            for path in folder.iterdir():
                headers = path.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode(errors="replace")
                fields = {}
                for line in headers.splitlines():
                    name, colon, value = line.partition(":")
                    if colon and name.startswith("X-Soak-"):
                        fields[name] = value.strip()
                delivered[fields.get("X-Soak-Account", "?")] += int(fields.get("X-Soak-Recipients", "0"))
    return delivered


def staged(maildirs: list[Path]) -> int:
    return sum(1 for maildir in maildirs if (maildir / "tmp").exists() for _ in (maildir / "tmp").iterdir())


def report_by_account(env: dict[str, str]) -> dict[str, int]:
    done = cli(env, "usage", "report", "--by", "account", "--json")
    if done.returncode != 0:
        raise RuntimeError(f"usage report exited {done.returncode}: {done.stderr}")
    return {row["account"]: row["emails"] for row in json.loads(done.stdout)["rows"]}


def check_delivered_billed(env: dict[str, str], dsn: str, maildirs: list[Path], journal: Journal) -> Check:
    import psycopg

    smtp = maildir_delivered(maildirs)
    policy: dict[str, int] = defaultdict(int)
    for account, count in journal.policy_passed.values():
        policy[account] += count
    billed = report_by_account(env)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT a.name, split_part(e.source_id, ':', 1), sum(e.emails) FROM usage_events e "
                            "JOIN accounts a ON a.id = e.account_id GROUP BY 1, 2").fetchall()
    by_path = {(name, path): int(total) for name, path, total in rows}
    ok, lines = True, [f"{'account':8} {'serve dlv':>9} {'serve bill':>10} {'policy dlv':>10} {'policy bill':>11} "
                       f"{'delivered':>9} {'billed':>7}"]
    for account in ACCOUNTS:
        name = account.name
        sd, sb, pd, pb = smtp.get(name, 0), by_path.get((name, "serve"), 0), policy.get(name, 0), \
            by_path.get((name, "policy"), 0)
        delivered, bill = sd + pd, billed.get(name, 0)
        row_ok = delivered == bill and sd == sb and pd == pb
        ok &= row_ok
        lines.append(f"{name:8} {sd:9,} {sb:10,} {pd:10,} {pb:11,} {delivered:9,} {bill:7,} "
                     f"{'ok' if row_ok else 'MISMATCH'}")
    if smtp.get("?"):
        ok = False
        lines.append(f"Maildir files without X-Soak-Account: {smtp['?']} emails")
    if journal.policy_lost:
        lines.append(f"policy requests never answered after {POLICY_RETRY_FOR:.0f}s of retries: "
                     f"{len(journal.policy_lost)} (their billing is unknown to the client)")
    return Check("a. delivered = billed, per account and path", ok, lines)


def check_hard_cap(dsn: str) -> tuple[Check, dict[str, int]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT a.name, e.day, a.daily_limit, e.emails, e.source_id FROM usage_events e "
                            "JOIN accounts a ON a.id = e.account_id ORDER BY e.id").fetchall()
    total: dict[tuple[str, str], int] = defaultdict(int)
    crossings: dict[tuple[str, str], int] = defaultdict(int)
    past: dict[tuple[str, str], int] = defaultdict(int)
    at_limit: dict[tuple[str, str], int] = defaultdict(int)
    limits: dict[tuple[str, str], int] = {}
    for name, day, limit, emails, _source in rows:
        key = (name, day)
        limits[key] = limit
        before = total[key]
        if before > limit:
            past[key] += 1  # recorded although the account was already past its limit
        elif before == limit:
            at_limit[key] += 1  # a count is full only past its limit (rule.py): this one is the crossing
        if before <= limit < before + emails:
            crossings[key] += 1
        total[key] = before + emails
    ok, lines = True, [f"{'account':8} {'day':10} {'limit':>9} {'total':>7} {'crossing':>8} {'past limit':>10} "
                       f"{'at limit':>8}"]
    for key in sorted(limits):
        row_ok = crossings[key] <= 1 and past[key] == 0
        ok &= row_ok
        lines.append(f"{key[0]:8} {key[1]:10} {limits[key]:9,} {total[key]:7,} {crossings[key]:8} {past[key]:10} "
                     f"{at_limit[key]:8} {'ok' if row_ok else 'VIOLATION'}")
    crossed = {name: n for (name, _day), n in crossings.items() if n}
    return Check("b. at most one crossing per account and day, nothing past the limit", ok, lines), crossed


def check_revocations(env: dict[str, str], crossed: dict[str, int]) -> Check:
    done = cli(env, "audit", "--action", LIMIT_AUDIT, "--limit", "0", "--json")
    if done.returncode != 0:
        return Check("c. one revocation per crossing", False, [f"audit exited {done.returncode}: {done.stderr}"])
    entries: dict[str, int] = defaultdict(int)
    for entry in json.loads(done.stdout):
        entries[entry["account"]] += 1
    ok, lines = True, [f"{'account':8} {'crossings':>9} {LIMIT_AUDIT + ' entries':>30}"]
    for account in ACCOUNTS:
        want, got = crossed.get(account.name, 0), entries.get(account.name, 0)
        row_ok = got == want
        ok &= row_ok
        lines.append(f"{account.name:8} {want:9} {got:30} {'ok' if row_ok else 'MISMATCH'}")
    return Check("c. one revocation per crossing", ok, lines)


def check_temporary(journal: Journal, chaos: Chaos, start: float) -> Check:
    window = chaos.pg_down
    temporary = [r for r in journal.replies if r.temporary]
    outside = [r for r in temporary
               if window is None or not (window[0] <= r.at - start <= window[1] + GRACE)]
    lines = [f"PostgreSQL down {window[0]:.1f}s .. {window[1]:.1f}s (+{GRACE:.0f}s grace)" if window
             else "PostgreSQL was never restarted",
             f"temporary refusals: {len(temporary)}, outside the window: {len(outside)}"]
    for reply in outside[:10]:
        lines.append(f"  t={reply.at - start:.1f}s {reply.kind} {reply.node} {reply.account} {reply.code} "
                     f"{reply.text[:120]}")
    return Check("d. temporary refusals only while PostgreSQL was down", not outside, lines)


def check_copy(env: dict[str, str], dsn: str, work: Path) -> Check:
    target = work / "copy.db"
    done = cli(env, "store", "copy", str(target), "--json")
    lines = [f"store copy exit {done.returncode}"]
    if done.returncode != 0:
        return Check("e. store copy to SQLite, same usage report", False, lines + [done.stderr.strip()[:500]])
    ours = cli(env, "usage", "report", "--by", "account", "--json")
    theirs = cli({**env, "SMTPCTL_DB": str(target)}, "usage", "report", "--by", "account", "--json")
    same = ours.returncode == theirs.returncode == 0 and json.loads(ours.stdout) == json.loads(theirs.stdout)
    lines.append("usage report --by account: " + ("equal" if same else f"DIFFERENT\n{ours.stdout}\n{theirs.stdout}"))
    return Check("e. store copy to SQLite, same usage report", same, lines)


# -- the run ------------------------------------------------------------------------------------------

def soak(duration: float, seed: int, keep: bool) -> int:
    began = time.monotonic()
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="smtpctl-soak-"))
    cluster = Cluster()
    fleet: dict[str, list[Node]] = {"serve": [], "policy": []}
    try:
        dsn = cluster.create_database("soak")
        env = {"SMTPCTL_DB": dsn, "SMTPCTL_BUSY_TIMEOUT": "2"}
        build_world(env)
        maildirs = [work / f"maildir-{i}" for i in range(2)]
        for i, maildir in enumerate(maildirs):
            fleet["serve"].append(Node(f"serve{i}", ["serve", "--submission", "127.0.0.1:0", "--smtps", "127.0.0.1:0",
                                                     "--auth-delay", "0.1",
                                                     # all the load comes from 127.0.0.1: one client for the throttle
                                                     "--max-auth-failures", "1000", "--maildir", str(maildir)], work, env))
        for i in range(2):
            fleet["policy"].append(Node(f"policy{i}", ["policy", "serve", "--listen", "127.0.0.1:0"], work, env))
        for node in fleet["serve"] + fleet["policy"]:
            node.start()

        journal, chaos = Journal(), Chaos()
        load = Load(fleet, env, journal, seed, duration)
        start = time.monotonic()
        load.stop_at = start + duration
        threads = [threading.Thread(target=load.smtp_worker, args=(i,), daemon=True) for i in range(4)]
        threads += [threading.Thread(target=load.policy_worker, args=(i,), daemon=True) for i in range(2)]
        threads.append(threading.Thread(target=load.cli_worker, daemon=True))
        chaos_thread = threading.Thread(target=run_chaos, args=(load, cluster, rng, chaos, start), daemon=True)
        for thread in [*threads, chaos_thread]:
            thread.start()
        chaos_thread.join(timeout=duration + 120)
        for thread in threads:
            thread.join(timeout=POLICY_RETRY_FOR + 60)
        if any(t.is_alive() for t in [*threads, chaos_thread]):
            raise RuntimeError("a load or chaos thread did not finish")

        stop_codes = {node.name: node.stop() for node in fleet["serve"] + fleet["policy"]}
        left = staged(maildirs)
        reconciled = []
        for node in fleet["serve"]:  # a start reconciles the staged files killed processes left in tmp/
            node.start()
            assert node.running is not None
            reconciled += [line.split(" event=", 1)[1] for line in node.running.text().splitlines()
                           if "event=reconciled" in line]
            stop_codes[node.name + "'"] = node.stop()

        replies = journal.replies
        print(f"smtpctl fleet soak: seed {seed}, duration {duration:.0f}s, wall {time.monotonic() - began:.0f}s")
        print(f"reproduce: python -m tests.soak.soak --duration {duration:.0f} --seed {seed}")
        tally: dict[tuple[str, str], int] = defaultdict(int)
        for reply in replies:
            tally[(reply.kind, reply.code)] += 1
        print("replies: " + ", ".join(f"{kind} {code}: {n}" for (kind, code), n in sorted(tally.items())))
        print("kills (s, node): " + ", ".join(f"{t:.1f} {name}" for t, name in chaos.kills))
        if chaos.pg_down:
            print(f"PostgreSQL down: {chaos.pg_down[0]:.1f}s .. {chaos.pg_down[1]:.1f}s")
        print(f"graceful stop exit codes: {stop_codes}; staged in tmp/ before the reconciling start: {left}; "
              f"reconciled: {reconciled or 'nothing logged'}")
        tracebacks = [p.name for p in work.glob("*.log") if "Traceback" in p.read_text()]
        on_restart = [f"{p.name}: {line.split(' event=', 1)[1]}" for p in sorted(work.glob("serve*.log"))
                      for line in p.read_text().splitlines() if "event=reconciled" in line]
        print(f"reconciled by every serve start: {on_restart or 'nothing logged'}")
        for error in chaos.errors:
            print(f"chaos: {error}")

        checks = [check_delivered_billed(env, dsn, maildirs, journal)]
        cap, crossed = check_hard_cap(dsn)
        checks += [cap, check_revocations(env, crossed), check_temporary(journal, chaos, start),
                   check_copy(env, dsn, work)]
        checks.append(Check("f. nodes stopped cleanly, no traceback in any log",
                            all(code == 0 for code in stop_codes.values()) and not tracebacks,
                            [f"tracebacks in: {tracebacks or 'none'}"]))
        for check in checks:
            print(f"\n{'PASS' if check.ok else 'FAIL'}  {check.name}")
            for line in check.lines:
                print(f"      {line}")
        failed = [c.name for c in checks if not c.ok]
        print(f"\n{'ALL INVARIANTS HOLD' if not failed else 'FAILED: ' + '; '.join(failed)} "
              f"(seed {seed}; wall {time.monotonic() - began:.0f}s)")
        if keep:
            print(f"logs and Maildirs kept in {work}")
        return 1 if failed else 0
    finally:
        for node in fleet["serve"] + fleet["policy"]:
            try:
                node.stop()
            except Exception as exc:  # noqa: BLE001 - cleaning up whatever state the soak is in
                print(f"cleanup: {node.name}: {exc!r}", file=sys.stderr)
        cluster.remove()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120, help="seconds of load (default 120)")
    parser.add_argument("--seed", type=int, default=None, help="the random seed (default: a new one, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and Maildirs (their folder is printed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    try:
        return soak(args.duration, seed, args.keep)
    except Exception as exc:  # noqa: BLE001 - the soak itself broke: say so, distinct from a failed invariant
        print(f"soak error (seed {seed}): {exc!r}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
