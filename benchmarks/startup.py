"""Start-up cost of the installed smtpctl: median wall time over N runs.

    python benchmarks/startup.py [--runs 20]

Prints the median (and min/max) for `python -c pass`, `smtpctl --version`,
and `smtpctl account list --json` against an empty store and one with 1,000
accounts. Never run as a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def smtpctl() -> str:
    local = Path(sys.executable).parent / "smtpctl"
    return str(local) if local.exists() else (shutil.which("smtpctl") or "smtpctl")


def isolated_env(folder: Path, db: Path | None = None) -> dict[str, str]:
    """The environment for a benchmark's smtpctl runs: an empty client config
    in ``folder`` (never the user's), and the store ``db`` when given."""
    config = folder / "none.toml"
    config.write_text("")
    env = dict(os.environ, SMTPCTL_CONFIG=str(config))
    if db is not None:
        env["SMTPCTL_DB"] = str(db)
    return env


def timed(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def populate(db: Path, accounts: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from smtpctl.core import services
    from smtpctl.core.store import Store

    with Store.open(db, actor="bench") as store:
        services.add_agency(store, "bench")
        agency_id = store.agency("bench").id
        with store.write():
            for i in range(accounts):
                store.insert_account(f"acct-{i:04d}", agency_id, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    binary = smtpctl()
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty.db", Path(tmp) / "full.db"
        env = isolated_env(Path(tmp))
        subprocess.run([binary, "--db", str(empty), "agency", "list"], env=env, check=True,
                       stderr=subprocess.DEVNULL)
        populate(full, 1000)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("smtpctl --version", [binary, "--version"]),
            ("smtpctl account list --json (empty)", [binary, "--db", str(empty), "account", "list", "--json"]),
            ("smtpctl account list --json (1,000 accounts)", [binary, "--db", str(full), "account", "list", "--json"]),
        ]
        print(f"{'command':48} {'median ms':>10} {'min':>8} {'max':>8}   ({args.runs} runs each)")
        for label, cmd in cases:
            times = timed(cmd, env, args.runs)
            print(f"{label:48} {statistics.median(times) * 1000:10.1f} {min(times) * 1000:8.1f} "
                  f"{max(times) * 1000:8.1f}")


if __name__ == "__main__":
    main()
