"""Every figure of issue 12 in one command, with the peers where installed.

    python benchmarks/all.py            # the full sizes (1M events, 1M log lines): several minutes
    python benchmarks/all.py --quick    # smaller inputs and fewer runs, for a first look

Runs benchmarks/startup.py, usage.py and serve.py one after the other (their
own output is shown as it comes), then prints one table: each figure, the
peer it is measured against in the same run (python -c pass, --version,
pflogsumm, bare aiosmtpd, policyd-rate-limit), the ratio and the goal.
Peers that are not installed are named, not faked. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer runs")
    args = parser.parse_args()
    sizes = {
        "startup.py": ["--runs", "5" if args.quick else "15"],
        "usage.py": (["--events", "200000", "--lines", "200000", "--import-runs", "1", "--runs", "3"]
                     if args.quick else []),
        "serve.py": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.jsonl"
        env = {**os.environ, "SMTPCTL_BENCH_SUMMARY": str(summary)}
        for script, extra in sizes.items():
            print(f"### {script} {' '.join(extra)}", flush=True)
            subprocess.run([sys.executable, str(HERE / script), *extra], env=env, check=True)
            print(flush=True)
        rows = [json.loads(line) for line in summary.read_text().splitlines()] if summary.exists() else []
    heads = ("figure", "smtpctl", "peer (same run)", "ratio", "goal", "met")
    keys = ("figure", "smtpctl", "peer", "ratio", "goal", "met")
    widths = [max([len(h)] + [len(str(r[k])) for r in rows]) for h, k in zip(heads, keys)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(row[k]).ljust(w) for k, w in zip(keys, widths)))


if __name__ == "__main__":
    main()
