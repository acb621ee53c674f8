"""apply at volume: 200 accounts, 400 domains, 1,000 credentials.

    python benchmarks/apply.py

Measures whole `smtpctl apply` processes:
1. `generate = true` for every credential into an empty store (1,000 argon2id
   hashes, done in threads before the write lock);
2. the same file again, unchanged (nothing may be hashed or verified);
3. a file whose credentials take their password from `password_file`, applied
   once, then again unchanged: the second run must verify each source against
   its stored hash (1,000 argon2id verifies) to know it is unchanged.
Never run as a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

ACCOUNTS, DOMAINS_PER_ACCOUNT, CREDENTIALS = 200, 2, 1000


def document(source: str) -> str:
    lines = ['version = 1', '[[agencies]]', 'name = "bench"']
    for a in range(ACCOUNTS):
        lines += ["[[accounts]]", f'name = "acct{a:03d}"', 'agency = "bench"']
    domains = [f"d{a:03d}-{d}.example" for a in range(ACCOUNTS) for d in range(DOMAINS_PER_ACCOUNT)]
    for i, name in enumerate(domains):
        lines += ["[[domains]]", f'name = "{name}"', f'account = "acct{i // DOMAINS_PER_ACCOUNT:03d}"']
    for c in range(CREDENTIALS):
        lines += ["[[credentials]]", f'login = "u{c}@{domains[c % len(domains)]}"', source]
    return "\n".join(lines) + "\n"


def run(binary: str, args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([binary, *args, "--json"], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return elapsed, json.loads(proc.stdout)["summary"]


def main() -> None:
    binary = smtpctl()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "pw.txt").write_text("a shared benchmark password\n")
        gen, files = tmp_path / "gen.toml", tmp_path / "files.toml"
        gen.write_text(document("generate = true"))
        files.write_text(document(f'password_file = "{tmp_path / "pw.txt"}"'))
        print(f"{ACCOUNTS} accounts, {ACCOUNTS * DOMAINS_PER_ACCOUNT} domains, {CREDENTIALS:,} credentials; "
              f"{os.cpu_count()} cores")
        for label, path, extra in (("generate = true", gen, ["--secrets-out"]), ("password_file", files, [])):
            env = isolated_env(tmp_path, tmp_path / f"{path.stem}.db")
            args = ["apply", str(path)] + ([*extra, str(tmp_path / f"{path.stem}-secrets.toml")] if extra else [])
            first, s1 = run(binary, args, env)
            again, s2 = run(binary, ["apply", str(path)], env)
            print(f"{label:16} first apply {first:6.1f} s ({s1['create']:,} created) | re-apply {again:6.2f} s "
                  f"({s2['unchanged']:,} unchanged, {s2['update']} updated)")


if __name__ == "__main__":
    main()
