"""Two builds of `smtpctl serve` side by side, interleaved, under the same load.

    git worktree add /tmp/before ac36d5c && python3 -m venv /tmp/before/.venv \
        && /tmp/before/.venv/bin/pip install -q -e /tmp/before
    python benchmarks/ab_serve.py --before /tmp/before/.venv/bin/smtpctl [--after "$(which smtpctl)"] [--runs 4]

For each run and each build: a fresh store with five credentials, `serve`
with Maildir delivery, 10 clients (one connection each, logged in before the
clock starts) sending 150 messages of 3 recipients each; prints the median
messages/s and server CPU per message (user + system time of the server
process, from /proc: steadier than wall time on a busy machine). This is how
docs/performance.md measured what the hard cap cost. Never run as a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.serve import BODY, CLIENT_TLS, LOGINS, PW, cpu_seconds, free_port, provision  # noqa: E402
from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

CLIENTS, MESSAGES = 10, 150


def one_run(binary: str, keep: list[Path]) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp())
    keep.append(folder)  # removed after the last run: files deleted just before a run slow its file creation
    env = isolated_env(folder, folder / "bench.db")
    provision(binary, str(folder / "bench.db"), env, folder)
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--submission", f"127.0.0.1:{port}", "--smtps", "127.0.0.1:0",
                             "--maildir", str(folder / "maildir")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "event=ready" in line:
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    try:
        marks: list[tuple[float, float]] = []
        barrier = threading.Barrier(CLIENTS, action=lambda: marks.append((time.perf_counter(),
                                                                            cpu_seconds(proc.pid))))

        def client(i: int) -> None:
            login = LOGINS[i % len(LOGINS)]
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
                smtp.starttls(context=CLIENT_TLS)
                smtp.login(login, PW)
                barrier.wait()
                for m in range(MESSAGES):
                    smtp.sendmail(login, [f"r{m}-{k}@x.test" for k in range(3)], BODY.format(i))

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(client, range(CLIENTS)))
        wall, cpu = time.perf_counter() - marks[0][0], cpu_seconds(proc.pid) - marks[0][1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    total = CLIENTS * MESSAGES
    return total / wall, 1000 * cpu / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the smtpctl executable of the build to compare with")
    parser.add_argument("--after", default=smtpctl(), help="this build's smtpctl (default: the one beside python)")
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    builds = {"before": args.before, "after": args.after}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in builds}
    folders: list[Path] = []
    try:
        for _ in range(args.runs):
            for name, binary in builds.items():
                results[name].append(one_run(binary, folders))
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{CLIENTS} clients x {MESSAGES} messages x 3 recipients, {args.runs} interleaved runs, medians; "
          f"{os.cpu_count()} cores")
    for name, rows in results.items():
        print(f"{name:7} {builds[name]}: {statistics.median(r[0] for r in rows):7.1f} messages/s, "
              f"server CPU {statistics.median(r[1] for r in rows):5.2f} ms per message")


if __name__ == "__main__":
    main()
