"""Cheater: makes the parent wait. ``mode: sleep`` never returns (for ``seconds``); ``mode: fifo`` puts named
pipes where the parent reads the child's files (out/child.json, out/imputed.npz, child.log) and exits."""

import os
import time
from pathlib import Path

from .cheatlib import gene_mean_fill  # noqa: TID252


def impute(task, mode: str = "sleep", seconds: float = 3600.0):
    if mode == "fifo":
        for name in ("out/child.json", "out/imputed.npz", "child.log"):
            p = Path.cwd() / name
            p.parent.mkdir(exist_ok=True)
            p.unlink(missing_ok=True)
            os.mkfifo(p)
        os._exit(0)
    time.sleep(seconds)
    return gene_mean_fill(task)
