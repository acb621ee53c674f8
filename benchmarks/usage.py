"""Usage at volume: import speed and memory, report time, single-record time.

    python benchmarks/usage.py [--events 1000000] [--runs 10]

Builds a store with 200 accounts, 200 dedicated domains and 1,000 credentials,
then measures, each as a whole `smtpctl` process:
- `usage import` of N JSONL events, and of the equivalent Postfix log
  (events per second, peak RSS of the process);
- `usage report --by account --by day` over a 30-day range holding
  N x 10 emails, against `smtpctl --version` in the same run;
- `usage record` of a single message.
Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

ACCOUNTS, CREDENTIALS_PER_ACCOUNT = 200, 5


def build_store(db: Path) -> list[str]:
    from smtpctl.core import services
    from smtpctl.core.store import Store

    logins = []
    with Store.open(db, actor="bench") as store:
        services.add_agency(store, "bench")
        services.set_setting(store, "default_daily_limit", "100000000")
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


def write_postfix(path: Path, logins: list[str], events: int, start: datetime) -> None:
    rnd = random.Random(2)
    span = 29 * 86400
    with open(path, "w") as fh:
        for i in range(events):
            at = start + timedelta(seconds=span * i // events)
            stamp = f"{at.strftime('%b')} {at.day:>2} {at.strftime('%H:%M:%S')}"
            qid = f"{i:011X}"
            user = rnd.choice(logins)
            fh.write(f"{stamp} mx postfix/submission/smtpd[100]: {qid}: client=app[10.0.0.1], "
                     f"sasl_method=PLAIN, sasl_username={user}\n")
            fh.write(f"{stamp} mx postfix/cleanup[101]: {qid}: message-id=<{i}@bench>\n")
            fh.write(f"{stamp} mx postfix/qmgr[102]: {qid}: from=<{user}>, size=1000, nrcpt=10 (queue active)\n")
            fh.write(f"{stamp} mx postfix/qmgr[102]: {qid}: removed\n")


_PROBE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "elapsed = time.perf_counter() - start\n"
    "sys.stderr.write(proc.stderr)\n"
    "print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc.returncode)\n"
    "sys.stdout.write(proc.stdout)\n"
)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB) and stdout of one smtpctl process, measured by a
    fresh parent that has no other children."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *cmd], env=env, capture_output=True, text=True)
    head, _, stdout = out.stdout.partition("\n")
    elapsed, rss, rc = head.split()
    if rc != "0":
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    return float(elapsed), int(rss), stdout


def median(cmd: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(cmd, env)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    binary = smtpctl()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = isolated_env(tmp_path)
        start = (datetime.now(timezone.utc) - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
        db_json, db_pf = tmp_path / "json.db", tmp_path / "postfix.db"
        logins = build_store(db_json)
        build_store(db_pf)
        jsonl, maillog = tmp_path / "events.jsonl", tmp_path / "maillog"
        write_jsonl(jsonl, logins, args.events, start)
        write_postfix(maillog, logins, args.events, start)
        print(f"{args.events:,} messages of 10 recipients, {ACCOUNTS} accounts, {len(logins):,} credentials, "
              f"over 30 days")

        for label, db, src, extra in (("jsonl", db_json, jsonl, []),
                                      ("postfix", db_pf, maillog, ["--year", str(start.year), "--log-timezone", "UTC"])):
            elapsed, rss, stdout = timed([binary, "--db", str(db), "usage", "import", str(src), "--format", label,
                                          "--json", *extra], env)
            summary = json.loads(stdout)
            print(f"import {label:8} {summary['messages']:>10,} events in {elapsed:6.1f} s = "
                  f"{summary['messages'] / elapsed:>9,.0f} events/s; peak RSS {rss / 1024:.0f} MiB; "
                  f"file {src.stat().st_size / 1e6:.0f} MB")

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
