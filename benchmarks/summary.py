"""Rows for the one table `python benchmarks/all.py` prints.

Each benchmark calls ``record`` at its headline figures; the rows go to the
file named by SMTPCTL_BENCH_SUMMARY (set by all.py), one JSON object a line,
and nowhere when it is unset (a benchmark run on its own).
"""

from __future__ import annotations

import json
import os


def record(figure: str, smtpctl: str, peer: str, ratio: str, goal: str, met: bool | None) -> None:
    path = os.environ.get("SMTPCTL_BENCH_SUMMARY")
    if not path:
        return
    row = {"figure": figure, "smtpctl": smtpctl, "peer": peer, "ratio": ratio, "goal": goal,
           "met": "" if met is None else ("yes" if met else "no")}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
