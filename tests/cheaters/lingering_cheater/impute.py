"""Cheater: leaves a daemon behind (double fork, new session, environment wiped by re-exec) that keeps
writing after its job ended; the first pass let such a process rewrite metrics.json files later. Here it
appends to ``<checkpoint_dir>/beacon`` every 20 ms for ``seconds`` (the test's window onto it). With ``fail``, it
then raises, so that its row fails and the runner keeps the checkpoint folder (it removes it after an ok row)."""

import os
import sys

from .cheatlib import gene_mean_fill  # noqa: TID252

DAEMON = ("import os, sys, time\n"
          "p = sys.argv[1]; end = time.time() + float(sys.argv[2])\n"
          "while time.time() < end:\n"
          "    with open(p, 'a') as fh: fh.write(f'{os.getpid()}\\n')\n"
          "    time.sleep(0.02)\n")


def impute(task, seconds: float = 4.0, fail: bool = False):
    beacon = os.path.realpath(task.checkpoint_dir / "beacon") if task.checkpoint_dir else os.path.join(os.getcwd(), "beacon")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execve(sys.executable, [sys.executable, "-c", DAEMON, beacon, str(seconds)], {})  # no token left
        os._exit(0)
    os.wait()
    if fail:
        raise RuntimeError("lingering_cheater: left a daemon behind")
    return gene_mean_fill(task)
