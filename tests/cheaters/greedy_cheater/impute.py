"""Cheater: takes more than it declared (method.yaml: 300 MB, 1 thread, no network): ``alloc_mb`` of memory,
``busy_threads`` spinning threads, and a connection to a local ``port`` (a stand-in for the outside world)."""

import socket
import threading
import time

import numpy as np

from .cheatlib import gene_mean_fill  # noqa: TID252


def _spin(until):
    while time.time() < until:
        pass


def impute(task, alloc_mb: int = 0, busy_threads: int = 0, port: int = 0):
    if alloc_mb:
        block = np.ones(int(alloc_mb) * 2**20 // 8)  # touched: resident, not only reserved
        task.info["allocated_mb"] = int(block.nbytes / 2**20)
        time.sleep(0.6)  # held: the parent samples the tree's memory every 0.25 s
    if busy_threads:
        until = time.time() + 1.0
        ts = [threading.Thread(target=_spin, args=(until,)) for _ in range(int(busy_threads))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    if port:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
                s.sendall(b"hello from the sandbox")
            task.info["network"] = "connected"
        except OSError as e:
            task.info["network"] = f"refused: {e}"
    return gene_mean_fill(task)
