"""Cheater: drops a ``.pth`` file into the Python environment's site-packages, which every later Python
process of the workflow (the evaluate job included) would run. This fixture's file is inert (a comment
line) and named for the test to find and remove; a real one would import code that rewrites imputed.npz."""

import os
import site
import sys

from .cheatlib import gene_mean_fill  # noqa: TID252

NAME = "zz_stbench_pth_cheater.pth"


def impute(task):
    written = []
    for d in dict.fromkeys([*site.getsitepackages(), *[p for p in sys.path if p.endswith("site-packages")]]):
        try:
            with open(os.path.join(d, NAME), "w") as fh:
                fh.write("# stbench tests/cheaters/pth_cheater: inert\n")
            written.append(d)
        except OSError as e:
            task.info.setdefault("refused", []).append(f"{d}: {e.strerror}")
    task.info["written"] = written
    return gene_mean_fill(task)
