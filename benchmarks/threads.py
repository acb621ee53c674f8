"""Where the live paths' CPU goes, thread by thread, in one run.

    python benchmarks/threads.py [--only serve|policy] [--rounds 3] [--smtpctl CMD]

For each round of the load of ``benchmarks/serve.py`` (``serve``: 10
clients x 50 messages, Maildir; ``policy serve``: 10 clients x 200
requests at END-OF-MESSAGE), reads every thread of the server from /proc
before and after, and prints per message (or request) its user and system
CPU and its voluntary and involuntary context switches, then the client's
own CPU. A voluntary switch is a thread going to sleep: waiting for a
queue, the GIL, a lock or the disk.

Python 3.11 does not name its threads to the kernel, so they are told
apart by order: ``main`` (the event loop), ``first`` (the first thread
started, which is the store's: both servers open the store before they
accept anyone) and ``others`` (all the rest summed: in ``serve`` the
Maildir and relay threads, ``--threads`` how many there were). ``serve``
rounds alternate with a bare aiosmtpd server's (``benchmarks/serve.py``'s
``BARE``) for the ratio of the moment.

``--smtpctl CMD`` measures another build: an executable that runs that
build's smtpctl (for a copy of the tree, a script that changes into the
copy and runs ``python -m smtpctl "$@"``: ``-m`` puts the current folder
first on ``sys.path``, so run from anywhere else it measures that folder's
smtpctl, not the copy). Linux only. Never run as a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import serve as load  # noqa: E402
from benchmarks.startup import isolated_env, smtpctl  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[int, tuple[int, int, int, int]]:
    """Each thread of ``pid``: (user ticks, system ticks, voluntary, involuntary switches)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
        except FileNotFoundError:  # ended between the listing and the read
            continue
        switches = {k: int(v) for k, _, v in (line.partition(":") for line in status) if k.endswith("ctxt_switches")}
        found[int(tid)] = (int(stat[11]), int(stat[12]), switches["voluntary_ctxt_switches"],
                           switches["nonvoluntary_ctxt_switches"])
    return found


def split(pid: int, before: dict, after: dict, count: int) -> list[str]:
    """The lines for one round: main, first and others, per message."""
    others = sorted(t for t in after if t != pid)
    groups = {"main": [pid], "first": others[:1], "others": others[1:]}
    lines = []
    for name, tids in groups.items():
        sums = [0, 0, 0, 0]
        busy = 0
        for tid in tids:
            delta = [a - b for a, b in zip(after[tid], before.get(tid, (0, 0, 0, 0)))]
            busy += any(delta)
            sums = [s + d for s, d in zip(sums, delta)]
        if not tids:
            continue
        user, system = (1e6 * sums[i] / TICK / count for i in (0, 1))
        lines.append(f"  {name:6} user {user:6.1f} us  system {system:6.1f} us  voluntary switches "
                     f"{sums[2] / count:5.2f}  involuntary {sums[3] / count:5.2f}"
                     + (f"  ({busy} of {len(tids)} threads busy)" if name == "others" else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["serve", "policy"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smtpctl", default=smtpctl(), help="the smtpctl to measure (default: this venv's)")
    args = parser.parse_args()
    binary = args.smtpctl
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = isolated_env(folder, folder / "bench.db")
        load.provision(binary, str(folder / "bench.db"), env, folder)
        if args.only != "policy":
            messages = load.CLIENTS * load.MESSAGES
            cert, key = folder / "tls" / "selfsigned-cert.pem", folder / "tls" / "selfsigned-key.pem"
            port, bare_port = load.free_port(), load.free_port()
            serve = load.start([binary, "serve", "--submission", f"127.0.0.1:{port}", "--smtps", "127.0.0.1:0",
                                "--maildir", str(folder / "maildir")], env, "event=ready")
            bare = load.start([sys.executable, "-c", load.BARE, str(cert), str(key), str(bare_port)], env, "ready")
            try:
                load.send_load(port)  # warm: TLS session set-up, the store's pages, the threads started
                print(f"serve: {load.CLIENTS} clients x {load.MESSAGES} messages (Maildir), per message")
                for _ in range(args.rounds):
                    before, cpu = threads(serve.pid), load.own_cpu()
                    took = load.send_load(port)
                    after, cpu = threads(serve.pid), load.own_cpu() - cpu
                    bare_before = threads(bare.pid)
                    bare_took = load.send_load(bare_port)
                    bare_after = threads(bare.pid)
                    print(f"serve {messages / took:6.0f}/s, bare aiosmtpd {messages / bare_took:6.0f}/s: "
                          f"{bare_took / took:.2f}x; client CPU {1e6 * cpu / messages:.0f} us a message")
                    print("\n".join(split(serve.pid, before, after, messages)))
                    print("  bare" + split(bare.pid, bare_before, bare_after, messages)[0][6:])
            finally:
                load.stop(serve)
                load.stop(bare)
        if args.only != "serve":
            requests = load.CLIENTS * 200
            port = load.free_port()
            policy = load.start([binary, "policy", "serve", "--listen", f"127.0.0.1:{port}"], env, "event=listening")
            try:
                load.policy_load(port)
                print(f"policy serve: {load.CLIENTS} clients x 200 requests at END-OF-MESSAGE, per request")
                for _ in range(args.rounds):
                    before, cpu = threads(policy.pid), load.own_cpu()
                    took = load.policy_load(port)
                    after, cpu = threads(policy.pid), load.own_cpu() - cpu
                    print(f"policy {requests / took:6.0f}/s; client CPU {1e6 * cpu / requests:.0f} us a request")
                    print("\n".join(split(policy.pid, before, after, requests)))
            finally:
                load.stop(policy)


if __name__ == "__main__":
    main()
