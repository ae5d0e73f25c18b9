"""bot/ops/supervisor.py driven as a process: SIGTERM stops every child and exits 0; a child
that exits with a code is logged with that code and restarted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from bot.paths import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import subprocess, sys
    from bot.ops.supervisor import Supervisor
    def spawn(name):
        code = "import time; time.sleep(600)" if name == "sleeper" else "raise SystemExit(3)"
        return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    procs = {n: spawn(n) for n in ("sleeper", "quitter")}
    def stop():
        for p in procs.values():
            p.kill()
            p.wait()
    sys.exit(Supervisor(procs, spawn, stop, limit=100, backoff=0.2, out=sys.stdout).run())
""")


def test_sigterm_stops_everything_with_exit_0_and_an_exit_code_is_logged(tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while out.read_text().count("quitter") < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        children = [c.pid for c in psutil.Process(proc.pid).children()]
        assert children
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text()
    assert "died: exit code 3; restarting it in 0.2 s (death 1 of 100 allowed within 300 s)" in text
    assert "giving up" not in text
    assert not [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
