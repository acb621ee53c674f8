"""Who owns a staged Maildir file (issue 23): a restart right after kill -9
must settle the dead process's staged files even when its pid is in use
again (a zombie, or another process): a live owner is one that holds its lock
file, which no reused pid can fake."""

from __future__ import annotations

import os
import subprocess
import sys

from smtpctl.servers.body import Spool
from smtpctl.servers.delivery import MaildirSpool, prepare_maildir


def staged_by(spool: MaildirSpool, queue_id: str) -> str:
    body = Spool().body()
    for line in (b"Subject: x\r\n", b"\r\n", b"body\r\n"):
        body.add(line)
    return spool.stage(queue_id, "a@d.example", b"Received: test\r\n", body)


def test_a_dead_owner_whose_pid_is_alive_again_is_settled(tmp_path):
    prepare_maildir(tmp_path)
    other = subprocess.Popen(["sleep", "60"])  # a live process that now has the dead server's pid
    try:
        dead = MaildirSpool(tmp_path)
        dead.owner, dead.suffix = f"{other.pid}_{'0' * 16}", f"P{other.pid}_{'0' * 16}.host"
        billed, unbilled = staged_by(dead, "A" * 20), staged_by(dead, "B" * 20)
        restarted = MaildirSpool(tmp_path)
        restarted.hold()
        try:
            assert restarted.reconcile(lambda ids: {"serve:" + "A" * 20} & set(ids)) == (1, 1)
        finally:
            restarted.release()
    finally:
        other.kill()
        other.wait()
    assert os.listdir(tmp_path / "new") == [os.path.basename(billed)]
    assert not os.path.exists(unbilled)
    assert os.listdir(tmp_path / "tmp") == []  # the restarted server's lock file went at its clean stop


def test_a_live_owner_in_another_process_keeps_its_staged_files(tmp_path):
    prepare_maildir(tmp_path)
    live = MaildirSpool(tmp_path)
    staged = staged_by(live, "C" * 20)
    holder = subprocess.Popen(  # another process holds the live owner's lock, as its server would
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(tmp_path / "tmp" / f".smtpctl-{live.owner}.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        other = MaildirSpool(tmp_path)
        assert other.reconcile(lambda ids: set()) == (0, 0)
        assert os.path.exists(staged)
    finally:
        holder.kill()
        holder.wait()
    # killed (-9): the kernel lets the lock go, and the next start settles the file
    assert MaildirSpool(tmp_path).reconcile(lambda ids: set()) == (0, 1)
    assert not os.path.exists(staged)


def test_files_of_an_older_smtpctl_without_a_token_are_settled(tmp_path):
    prepare_maildir(tmp_path)
    name = f"1700000000.M{'D' * 20}P{os.getpid()}.host"
    (tmp_path / "tmp" / name).write_bytes(b"x")
    assert MaildirSpool(tmp_path).reconcile(lambda ids: set(ids)) == (1, 0)
    assert os.listdir(tmp_path / "new") == [name]
