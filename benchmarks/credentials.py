"""Cost of credentials: whole-process create and verify, and a hash verify alone.

    python benchmarks/credentials.py [--runs 20]

Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.startup import isolated_env, smtpctl  # noqa: E402


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms  (min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    binary = smtpctl()
    with tempfile.TemporaryDirectory() as tmp:
        env = isolated_env(Path(tmp), Path(tmp) / "bench.db")

        def sh(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([binary, *argv], env=env, input=stdin, capture_output=True, text=True, check=True)

        sh("agency", "add", "bench")
        sh("account", "add", "bench", "--agency", "bench")
        creates, verifies = [], []
        for i in range(args.runs):
            domain = f"d{i // 5}.example"
            if i % 5 == 0:
                sh("domain", "add", domain, "--account", "bench")
            start = time.perf_counter()
            out = sh("user", "create", f"u{i}@{domain}", "--generate", "--json")
            creates.append(time.perf_counter() - start)
            password = json.loads(out.stdout)["password"]
            start = time.perf_counter()
            sh("user", "verify", f"u{i}@{domain}", "--password-stdin", stdin=password + "\n")
            verifies.append(time.perf_counter() - start)

        from smtpctl.core.model import passwords

        stored = passwords.hash_password("a benchmark password")
        hashing, verifying = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            passwords.hash_password("a benchmark password")
            hashing.append(time.perf_counter() - start)
            start = time.perf_counter()
            passwords.verify_password("a benchmark password", stored)
            verifying.append(time.perf_counter() - start)

    print(f"argon2id m={passwords.ARGON2_MEMORY_KIB} KiB t={passwords.ARGON2_TIME_COST} "
          f"p={passwords.ARGON2_PARALLELISM}; {args.runs} runs each, median")
    print(f"smtpctl user create --generate (whole process) {median_ms(creates)}")
    print(f"smtpctl user verify (whole process)            {median_ms(verifies)}")
    print(f"hash alone                                     {median_ms(hashing)}")
    print(f"hash verify alone                              {median_ms(verifying)}")


if __name__ == "__main__":
    main()
