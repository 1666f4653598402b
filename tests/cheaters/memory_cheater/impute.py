"""Cheater: looks through the caller's frames and every object the garbage collector tracks."""

import gc
import sys

from .cheatlib import as_truth, gene_mean_fill  # noqa: TID252


def impute(task):
    frame = sys._getframe(1)
    seen = []
    while frame is not None:
        seen.extend(frame.f_locals.values())
        frame = frame.f_back
    seen.extend(gc.get_objects())
    for obj in seen:
        try:
            cands = [obj, getattr(obj, "X", None), *(getattr(obj, "layers", {}) or {}).values()]
        except Exception:  # objects whose attribute lookup does something (ctypes libraries, proxies)
            continue
        for cand in cands:
            if cand is None or not hasattr(cand, "shape"):
                continue
            t = as_truth(task, cand)
            if t is not None:
                return t
    return gene_mean_fill(task)
