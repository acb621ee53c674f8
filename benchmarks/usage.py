"""Usage at volume: import speed and memory, report time, single-record time.

    python benchmarks/usage.py [--events 1000000] [--lines 1000000] [--import-runs 3] [--runs 10]
                               [--before SRC]

Builds a store with 200 accounts, 200 dedicated domains and 1,000 credentials,
then measures, each as a whole `smtpctl` process:
- `usage import` of N JSONL events (events per second, peak RSS);
- `usage import --format postfix` of a Postfix log of M lines shaped like a
  real one (connect, TLS, SASL, cleanup, qmgr, one smtp line per recipient,
  removed, disconnect), against `pflogsumm` on the same file when it is
  installed (apt-get install pflogsumm);
- `usage report --by account --by day` over a 30-day range holding
  N x 10 emails, against `smtpctl --version` in the same run;
- `usage record` of a single message;
- two floors, each in a process of its own in the same rounds: the store's
  insert alone of the events the JSONL import records (the rows prepared
  beforehand, untimed), and the Postfix parser alone (recording nothing):
  what each import cannot beat as built.
The imports run interleaved (JSONL, Postfix, pflogsumm, again), each on a
fresh copy of the store; the figures are medians, and each comes with the CPU
time of the process (user + system), steadier than wall time on a machine
other work shares. ``--before SRC`` (a checkout of an older smtpctl, e.g.
from ``git archive``) runs its imports too, interleaved with this tree's,
both as ``python -m smtpctl`` on their own ``PYTHONPATH``: a before/after
under the same load. The packages' bytecode is compiled first, as an install
does (``PYTHONDONTWRITEBYTECODE`` would otherwise have every run compile
smtpctl's modules again, ~0.1 s). Never run as a test.
"""

from __future__ import annotations

import argparse
import compileall
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import summary  # benchmarks/summary.py: this folder is on sys.path when a benchmark runs as a script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.startup import isolated_env, smtpctl  # noqa: E402
from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.settings import set_setting

ACCOUNTS, CREDENTIALS_PER_ACCOUNT = 200, 5


def build_store(db: Path) -> list[str]:
    from smtpctl.core.store import Store

    logins = []
    with Store.open(db, actor="bench") as store:
        add_agency(store, "bench")
        set_setting(store, "default_daily_limit", "100000000")
        agency_id = store.agency("bench").id
        with store.write():
            for a in range(ACCOUNTS):
                account_id = store.insert_account(f"acct{a:03d}", agency_id, None)
                domain_id = store.insert_domain(f"d{a:03d}.example", account_id=account_id, agency_id=None)
                for c in range(CREDENTIALS_PER_ACCOUNT):
                    login = f"u{c}@d{a:03d}.example"
                    store.insert_credential(domain_id, f"u{c}", login, "$argon2id$bench-not-a-real-hash")
                    logins.append(login)
    return logins


def write_jsonl(path: Path, logins: list[str], events: int, start: datetime) -> None:
    rnd = random.Random(1)
    span = 29 * 86400
    with open(path, "w") as fh:
        for i in range(events):
            at = start + timedelta(seconds=span * i // events)
            fh.write(json.dumps({"user": rnd.choice(logins), "recipients": 10,
                                 "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "id": f"j{i}"}) + "\n")


def write_postfix(path: Path, logins: list[str], lines: int, start: datetime) -> int:
    """A mail log of about ``lines`` lines as Postfix writes one for mail
    submitted with SASL (tests/fixtures/postfix/maillog-rig-1.log is a real
    one): 7 lines a message plus one smtp line per recipient (1 to 6). Returns
    the number of messages."""
    rnd = random.Random(2)
    span = 29 * 86400
    messages = lines // 10
    written = i = 0
    with open(path, "w") as fh:
        while written < lines:
            at = start + timedelta(seconds=span * min(i, messages) // messages)
            stamp = f"{at.strftime('%b')} {at.day:>2} {at.strftime('%H:%M:%S')}"
            qid = f"{i:011X}"
            user = rnd.choice(logins)
            n = rnd.randint(1, 6)
            port = rnd.choice(("submission", "smtps"))
            pid = 1000 + i % 5000
            out = [f"{stamp} mx postfix/{port}/smtpd[{pid}]: connect from app{i % 50}[10.0.{i % 250}.1]",
                   f"{stamp} mx postfix/{port}/smtpd[{pid}]: Anonymous TLS connection established from "
                   f"app{i % 50}[10.0.{i % 250}.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
                   f"{stamp} mx postfix/{port}/smtpd[{pid}]: {qid}: client=app{i % 50}[10.0.{i % 250}.1], "
                   f"sasl_method=PLAIN, sasl_username={user}",
                   f"{stamp} mx postfix/cleanup[101]: {qid}: message-id=<{i}@bench.example>",
                   f"{stamp} mx postfix/qmgr[102]: {qid}: from=<{user}>, size={rnd.randint(500, 90000)}, "
                   f"nrcpt={n} (queue active)",
                   f"{stamp} mx postfix/{port}/smtpd[{pid}]: disconnect from app{i % 50}[10.0.{i % 250}.1] ehlo=2 "
                   f"starttls=1 auth=1 mail=1 rcpt={n} data=1 quit=1 commands={7 + n}"]
            for r in range(n):
                out.append(f"{stamp} mx postfix/smtp[{2000 + i % 300}]: {qid}: to=<rcpt{r}.{i % 997}@example.net>, "
                           f"relay=mx{r}.example.net[192.0.2.{r + 1}]:25, delay=0.{r + 2}, delays=0.1/0/0.1/0.{r}, "
                           f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {i:X}{r})")
            out.append(f"{stamp} mx postfix/qmgr[102]: {qid}: removed")
            fh.write("\n".join(out) + "\n")
            written += len(out)
            i += 1
    return i


_PROBE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "elapsed = time.perf_counter() - start\n"
    "sys.stderr.write(proc.stderr)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(elapsed, usage.ru_maxrss, proc.returncode, usage.ru_utime + usage.ru_stime)\n"
    "sys.stdout.write(proc.stdout)\n"
)


# Floors: what the imports cannot beat as built, measured in the same run.
# The JSONL floor is the store's own insert (``Store.insert_usage``: the
# events, their unique ids, the rollup) of the rows that import records,
# prepared beforehand and untimed, in the import's batches: no reading, no
# parsing, no checking. The Postfix floor is the parser alone (``read_lines``
# and ``PostfixLog.feed`` over the log, recording nothing). Each runs in a
# process of its own and prints its wall and CPU seconds.
_JSONL_FLOOR = r"""
import json, sys, time
from smtpctl.core import rules
from smtpctl.core.store import Store
db, path = sys.argv[1], sys.argv[2]
store = Store.open(db, actor="bench")
who = {login: (agency, account, domain) for login, agency, account, domain in store.backend.execute(
    "SELECT c.login, a.agency_id, a.id, d.name FROM credentials c JOIN domains d ON d.id = c.domain_id "
    "JOIN accounts a ON a.id = d.account_id")}
rows = []
with open(path, encoding="utf-8") as handle:
    for line in handle:
        ev = json.loads(line)
        agency, account, domain = who[ev["user"]]
        n = ev["recipients"]
        rows.append((ev["id"], ev["at"], ev["at"][:10], "outbound", agency, account, domain, ev["user"],
                     n, 0, 0, n, "2026-01-01T00:00:00Z"))
size = rules.IMPORT_BATCH_SIZE
wall, cpu = time.perf_counter(), time.process_time()
for start in range(0, len(rows), size):
    with store.write():
        if not store.insert_usage(rows[start:start + size], only_new=True):
            raise SystemExit("an id was already stored: the floor would have inserted less than the import")
print(time.perf_counter() - wall, time.process_time() - cpu, len(rows))
"""

_POSTFIX_FLOOR = r"""
import sys, time
from datetime import timezone
from smtpctl.core import ingest
wall, cpu = time.perf_counter(), time.process_time()
with open(sys.argv[1], "rb") as handle:
    items = ingest.PostfixLog(year=int(sys.argv[2]), log_tz=timezone.utc).feed(ingest.read_lines(handle))
    messages = sum(1 for item in items if isinstance(item, ingest.UsageInput))
print(time.perf_counter() - wall, time.process_time() - cpu, messages)
"""


def floor(script: str, args: list[str], env: dict[str, str], here: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds a floor script prints, and the messages it handled (run with this
    tree on its path)."""
    out = subprocess.run([sys.executable, "-c", script, *args], env=dict(env, PYTHONPATH=str(here)),
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"a floor failed: {out.stderr}")
    wall, cpu, messages = out.stdout.split()
    return float(wall), float(cpu), int(messages)


@dataclass
class Run:
    wall: float  # seconds
    rss: int  # KiB
    cpu: float  # seconds, user + system
    stdout: str


def measure(cmd: list[str], env: dict[str, str]) -> Run:
    """Wall time, peak RSS and CPU time of one process, measured by a fresh
    parent that has no other children."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *cmd], env=env, capture_output=True, text=True)
    head, _, stdout = out.stdout.partition("\n")
    elapsed, rss, rc, cpu = head.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return Run(float(elapsed), int(rss), float(cpu), stdout)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    run = measure(cmd, env)
    return run.wall, run.rss, run.stdout


def median(cmd: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(cmd, env)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="JSONL events")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the Postfix log")
    parser.add_argument("--import-runs", type=int, default=3, help="interleaved runs of each import")
    parser.add_argument("--runs", type=int, default=10, help="runs of each short command")
    parser.add_argument("--before", type=Path, help="an older source tree to measure interleaved with this one")
    args = parser.parse_args()
    binary = smtpctl()
    pflogsumm = shutil.which("pflogsumm")
    here = Path(__file__).resolve().parent.parent
    trees = {"": None} if args.before is None else {"": here, " (before)": args.before.resolve()}
    for tree in (here, *([args.before] if args.before else [])):
        compileall.compile_dir(str(Path(tree) / "smtpctl"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = isolated_env(tmp_path)
        start = (datetime.now(timezone.utc) - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
        base, db_json, db_pf = tmp_path / "base.db", tmp_path / "json.db", tmp_path / "postfix.db"
        logins = build_store(base)
        jsonl, maillog = tmp_path / "events.jsonl", tmp_path / "maillog"
        write_jsonl(jsonl, logins, args.events, start)
        messages = write_postfix(maillog, logins, args.lines, start)
        print(f"JSONL: {args.events:,} messages of 10 recipients ({jsonl.stat().st_size / 1e6:.0f} MB); Postfix log: "
              f"{args.lines:,} lines, {messages:,} messages ({maillog.stat().st_size / 1e6:.0f} MB); "
              f"{ACCOUNTS} accounts, {len(logins):,} credentials, 30 days; {args.import_runs} interleaved runs, "
              "medians")
        runs: dict[str, list[Run]] = {"pflogsumm": []}
        floors: dict[str, list[tuple[float, float, int]]] = {"jsonl": [], "postfix": []}
        for _ in range(args.import_runs):
            for suffix, tree in trees.items():
                command, tree_env = [binary], env
                if tree is not None:
                    command, tree_env = [sys.executable, "-m", "smtpctl"], dict(env, PYTHONPATH=str(tree))
                shutil.copy(base, db_json)
                runs.setdefault("jsonl" + suffix, []).append(
                    measure([*command, "--db", str(db_json), "usage", "import", str(jsonl), "--json"], tree_env))
                shutil.copy(base, db_pf)
                runs.setdefault("postfix" + suffix, []).append(
                    measure([*command, "--db", str(db_pf), "usage", "import", str(maillog), "--format", "postfix",
                             "--year", str(start.year), "--log-timezone", "UTC", "--json"], tree_env))
            if pflogsumm:
                runs["pflogsumm"].append(measure([pflogsumm, str(maillog)], env))
            shutil.copy(base, db_json)
            floors["jsonl"].append(floor(_JSONL_FLOOR, [str(db_json), str(jsonl)], env, here))
            floors["postfix"].append(floor(_POSTFIX_FLOOR, [str(maillog), str(start.year)], env, here))
        for suffix in reversed(trees):  # the tree before first
            for label, count, unit in (("jsonl", None, "events"), ("postfix", args.lines, "lines")):
                done = runs[label + suffix]
                recorded = json.loads(done[-1].stdout)["messages"]
                wall = statistics.median(r.wall for r in done)
                cpu = statistics.median(r.cpu for r in done)
                rss = max(r.rss for r in done)
                n = count or recorded
                print(f"import {label + suffix:17} {recorded:>9,} messages: {wall:6.1f} s = {n / wall:>9,.0f} "
                      f"{unit}/s (CPU {cpu:5.1f} s = {n / cpu:>9,.0f} {unit}/s); peak RSS {rss / 1024:.0f} MiB")
            if runs["pflogsumm"]:
                pf_wall = statistics.median(r.wall for r in runs["pflogsumm"])
                pf_cpu = statistics.median(r.cpu for r in runs["pflogsumm"])
                ours_wall = statistics.median(r.wall for r in runs["postfix" + suffix])
                ours_cpu = statistics.median(r.cpu for r in runs["postfix" + suffix])
                print(f"pflogsumm, same log: {pf_wall:6.1f} s (CPU {pf_cpu:5.1f} s); smtpctl{suffix} is "
                      f"{pf_wall / ours_wall:.2f}x faster by wall time, {pf_cpu / ours_cpu:.2f}x by CPU time")
        done_json = runs["jsonl"]
        n = args.events
        wall = statistics.median(r.wall for r in done_json)
        cpu = statistics.median(r.cpu for r in done_json)
        rss = max(r.rss for r in done_json)
        # A floor that handled fewer messages than its import would be no floor.
        for label in ("jsonl", "postfix"):
            recorded = json.loads(runs[label][-1].stdout)["messages"]
            for handled in (f[2] for f in floors[label] if f[2] != recorded):
                raise SystemExit(f"the {label} floor handled {handled:,} messages, the import {recorded:,}")
        floor_wall, floor_cpu = (statistics.median(f[i] for f in floors["jsonl"]) for i in (0, 1))
        left = 1e6 / 200_000 - 1e6 * floor_wall / n
        print(f"floor, JSONL: the store's insert alone of the same {n:,} events (rows prepared, untimed): "
              f"{floor_wall:.1f} s = {n / floor_wall:,.0f} events/s (CPU {floor_cpu:.1f} s); 200,000 events/s "
              f"leaves {left:.1f} us an event for all the rest (start-up, reading, parsing, checking, the cap), "
              f"which takes {1e6 * (wall - floor_wall) / n:.1f} us now")
        summary.record("JSONL floor: the store's insert alone", f"{n / floor_wall:,.0f} events/s", "",
                       f"{n / floor_wall / 200_000:.2f}x the import's goal", "", None)
        pf_floor_wall, pf_floor_cpu = (statistics.median(f[i] for f in floors["postfix"]) for i in (0, 1))
        pf_floor = (f"floor, Postfix: the parser alone over the same log, recording nothing: {pf_floor_wall:.1f} s "
                    f"(CPU {pf_floor_cpu:.1f} s)")
        summary.record(f"JSONL import, {n:,} events", f"{n / wall:,.0f} events/s (CPU {n / cpu:,.0f}/s)",
                       "", "", ">= 200,000 events/s", n / wall >= 200_000)
        summary.record("JSONL import, peak RSS", f"{rss / 1024:.0f} MiB", "", "", "< 100 MiB", rss / 1024 < 100)
        if runs["pflogsumm"]:
            pf_wall = statistics.median(r.wall for r in runs["pflogsumm"])
            pf_cpu = statistics.median(r.cpu for r in runs["pflogsumm"])
            ours_wall = statistics.median(r.wall for r in runs["postfix"])
            ours_cpu = statistics.median(r.cpu for r in runs["postfix"])
            print(f"{pf_floor}; pflogsumm takes {pf_wall / pf_floor_wall:.2f}x as long: the most the import can be "
                  "faster with this parser")
            summary.record(f"Postfix log import, {args.lines:,} lines", f"{ours_wall:.1f} s", f"pflogsumm {pf_wall:.1f} s",
                           f"{pf_wall / ours_wall:.2f}x faster (CPU {pf_cpu / ours_cpu:.2f}x)", ">= 4x faster",
                           pf_wall / ours_wall >= 4)
            summary.record("Postfix floor: the parser alone", f"{pf_floor_wall:.1f} s", f"pflogsumm {pf_wall:.1f} s",
                           f"{pf_wall / pf_floor_wall:.2f}x", "", None)
        else:
            print(pf_floor)
            print("pflogsumm is not installed (apt-get install pflogsumm): no comparison")
            summary.record("Postfix log import vs pflogsumm", "", "pflogsumm not installed", "", ">= 4x faster", None)

        version = median([binary, "--version"], env, args.runs)
        report_cmd = [binary, "--db", str(db_json), "usage", "report", "--by", "account", "--by", "day",
                      "--since", start.date().isoformat(), "--until", (start + timedelta(days=29)).date().isoformat(),
                      "--json"]
        report = median(report_cmd, env, args.runs)
        data = json.loads(subprocess.run(report_cmd, env=env, capture_output=True, text=True).stdout)
        print(f"report --by account --by day over {data['total']['emails']:,} emails ({len(data['rows']):,} rows): "
              f"{report * 1000:.0f} ms; smtpctl --version {version * 1000:.0f} ms; ratio {report / version:.2f}x")
        record = median([binary, "--db", str(db_json), "usage", "record", "--user", logins[0], "--recipients", "3"],
                        env, args.runs)
        print(f"usage record (one message, whole process): {record * 1000:.0f} ms (median of {args.runs})")


if __name__ == "__main__":
    main()
