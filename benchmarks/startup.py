"""Start-up and big tables of the installed smtpctl, with the issue's ratios.

    python benchmarks/startup.py [--runs 15] [--baseline DIR]

Every case is a whole process. The cases run interleaved (one run of each,
then the next round), so a machine loaded by other work slows them alike;
the figures are medians of wall time and of the child's CPU time
(user + sys, from ``os.wait4``), which is steadier than wall time.

Cases: ``python -c pass``, ``smtpctl --version``, ``account list --json``
(empty store), ``account list`` as JSON and as a table with 10,000
accounts, and ``usage report --by account --by day`` over 30 days of 200
accounts (6,000 rows) as JSON and as a table. Never run as a test.

``--baseline DIR`` (a checkout of another revision, e.g. ``git archive main
smtpctl | tar -x -C DIR``) adds its ``--version`` and ``account list --json``
to the same rounds, and this tree's own, both run as ``python -m smtpctl``
with ``PYTHONPATH`` naming the tree: before and after, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import summary  # benchmarks/summary.py: this folder is on sys.path when a benchmark runs as a script

from smtpctl.core.directory.agencies import add_agency
from smtpctl.core.directory.settings import set_setting


def smtpctl() -> str:
    local = Path(sys.executable).parent / "smtpctl"
    return str(local) if local.exists() else (shutil.which("smtpctl") or "smtpctl")


def isolated_env(folder: Path, db: Path | None = None) -> dict[str, str]:
    """The environment for a benchmark's smtpctl runs: an empty client config
    in ``folder`` (never the user's), and the store ``db`` when given."""
    config = folder / "none.toml"
    config.write_text("")
    env = dict(os.environ, SMTPCTL_CONFIG=str(config))
    env.pop("COLUMNS", None)  # tables off a terminal are 200 columns wide
    if db is not None:
        env["SMTPCTL_DB"] = str(db)
    return env


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys) of one process, output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode()[:500]}")
    return wall, usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall times of ``runs`` runs of one command (kept for the other benchmarks)."""
    return [run_once(cmd, env)[0] for _ in range(runs)]


def populate(db: Path, accounts: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from smtpctl.core.store import Store

    with Store.open(db, actor="bench") as store:
        add_agency(store, "bench")
        agency_id = store.agency("bench").id
        with store.write():
            for i in range(accounts):
                store.insert_account(f"acct-{i:05d}", agency_id, None)


def usage_store(db: Path, folder: Path, env: dict[str, str], accounts: int = 200, days: int = 30) -> tuple[str, str]:
    """A store with one domain and credential per account and mail on every
    day of the last ``days`` days, so a report by account and day has
    ``accounts * days`` rows; returns the report's first and last day."""
    from smtpctl.core.store import Store

    with Store.open(db, actor="bench") as store:
        add_agency(store, "bench")
        set_setting(store, "default_daily_limit", "100000000")
        agency_id = store.agency("bench").id
        with store.write():
            for a in range(accounts):
                account_id = store.insert_account(f"acct{a:03d}", agency_id, None)
                domain_id = store.insert_domain(f"d{a:03d}.example", account_id=account_id, agency_id=None)
                store.insert_credential(domain_id, "u", f"u@d{a:03d}.example", "$argon2id$bench-not-a-real-hash")
    first = (datetime.now(timezone.utc) - timedelta(days=days)).replace(hour=12, minute=0, second=0, microsecond=0)
    events = folder / "events.jsonl"
    with open(events, "w") as fh:
        for d in range(days):
            at = (first + timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for a in range(accounts):
                fh.write(json.dumps({"user": f"u@d{a:03d}.example", "recipients": 1 + (a * 7 + d) % 50,
                                     "at": at, "id": f"{a}-{d}"}) + "\n")
    subprocess.run([smtpctl(), "--db", str(db), "usage", "import", str(events), "--format", "jsonl"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return first.date().isoformat(), (first + timedelta(days=days - 1)).date().isoformat()


def report(title: str, cases: dict[str, list[str]], walls: dict[str, list[float]], cpus: dict[str, list[float]],
           runs: int) -> None:
    wall = {k: statistics.median(v) * 1000 for k, v in walls.items()}
    cpu = {k: statistics.median(v) * 1000 for k, v in cpus.items()}
    print(title)
    print(f"{'command':34} {'wall ms':>9} {'min':>8} {'max':>8} {'cpu ms':>8}   "
          f"(medians of {runs} interleaved runs)")
    for label in cases:
        print(f"{label:34} {wall[label]:9.1f} {min(walls[label]) * 1000:8.1f} {max(walls[label]) * 1000:8.1f} "
              f"{cpu[label]:8.1f}")
    print(f"{'ratio':58} {'wall':>6} {'cpu':>6}  goal")
    for label, a, b, goal in (
        ("account list --json (empty) / python -c pass", "account list --json (empty)", "python -c pass", 6),
        ("smtpctl --version / python -c pass", "smtpctl --version", "python -c pass", None),
        ("usage report table (6,000 rows) / --version", "usage report table (6,000 rows)", "smtpctl --version", 3),
        ("usage report --json (6,000 rows) / --version", "usage report --json (6,000 rows)", "smtpctl --version",
         None),
        ("account list table / --json (10,000)", "account list table (10,000)", "account list --json (10,000)", 2),
    ):
        print(f"{label:58} {wall[a] / wall[b]:5.2f}x {cpu[a] / cpu[b]:5.2f}x  "
              f"{'<= ' + str(goal) + 'x' if goal else ''}")
        if goal:
            summary.record(f"{label} ({title.strip('= ')})", f"{wall[a]:.0f} ms", f"{b}: {wall[b]:.0f} ms",
                           f"{wall[a] / wall[b]:.2f}x", f"<= {goal}x", wall[a] / wall[b] <= goal)
    for name in ("this tree", "baseline"):
        label = f"{name}: account list --json"
        if label in cases:
            print(f"{label + ' / python -c pass':58} {wall[label] / wall['python -c pass']:5.2f}x "
                  f"{cpu[label] / cpu['python -c pass']:5.2f}x  (python -m smtpctl, run through env)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="another revision's tree (holding smtpctl/) to compare")
    args = parser.parse_args()
    binary = smtpctl()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        empty, full, used = folder / "empty.db", folder / "full.db", folder / "usage.db"
        env = isolated_env(folder)
        subprocess.run([binary, "--db", str(empty), "store", "set", "timezone", "UTC"], env=env, check=True,  # a write makes the store
                       stderr=subprocess.DEVNULL)
        populate(full, 10_000)
        since, until = usage_store(used, folder, env)
        report_cmd = [binary, "--db", str(used), "usage", "report", "--by", "account", "--by", "day",
                      "--since", since, "--until", until]
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "smtpctl --version": [binary, "--version"],
            "account list --json (empty)": [binary, "--db", str(empty), "account", "list", "--json"],
            "account list --json (10,000)": [binary, "--db", str(full), "account", "list", "--json"],
            "account list table (10,000)": [binary, "--db", str(full), "account", "list"],
            "usage report --json (6,000 rows)": report_cmd + ["--json"],
            "usage report table (6,000 rows)": report_cmd,
        }
        if args.baseline:
            here = Path(__file__).resolve().parent.parent
            for name, tree in (("this tree", here), ("baseline", args.baseline.resolve())):
                python = ["env", f"PYTHONPATH={tree}", sys.executable, "-P", "-m", "smtpctl"]  # -P: not the cwd's smtpctl
                cases[f"{name}: --version"] = [*python, "--version"]
                cases[f"{name}: account list --json"] = [*python, "--db", str(empty), "account", "list", "--json"]
        # Two ways Python may find smtpctl's code: as this environment has it
        # (PYTHONDONTWRITEBYTECODE=1 here, so an editable install compiles its
        # modules from source on every run) and with bytecode cached, as a
        # wheel installed by pip has it (a private PYTHONPYCACHEPREFIX, filled
        # by one run of each case).
        cached = dict(env, PYTHONPYCACHEPREFIX=str(folder / "pycache"))
        filling = {k: v for k, v in cached.items() if k != "PYTHONDONTWRITEBYTECODE"}
        for cmd in cases.values():
            run_once(cmd, env)  # warm the page cache
            run_once(cmd, filling)
        as_is = "as this environment runs it (PYTHONDONTWRITEBYTECODE=" + os.environ.get(
            "PYTHONDONTWRITEBYTECODE", "unset") + ")"
        modes = {as_is: env, "bytecode cached, as a pip-installed wheel": cached}
        walls = {m: {k: [] for k in cases} for m in modes}
        cpus = {m: {k: [] for k in cases} for m in modes}
        for _ in range(args.runs):
            for mode, mode_env in modes.items():
                for label, cmd in cases.items():
                    wall, cpu = run_once(cmd, mode_env)
                    walls[mode][label].append(wall)
                    cpus[mode][label].append(cpu)
        for mode in modes:
            report(f"== {mode}", cases, walls[mode], cpus[mode], args.runs)


if __name__ == "__main__":
    main()
