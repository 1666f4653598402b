"""Cheater: from every path it can see, walks up five folders and opens each *.h5ad / *.npz up to
four levels below, looking for the truth of its task (system folders and package trees skipped).
In the old layout the truth sat at ``task.scratch.parents[4]``."""

import os
import sys
from pathlib import Path

import numpy as np

from .cheatlib import as_truth, gene_mean_fill  # noqa: TID252

SKIP = {"proc", "sys", "dev", "usr", "lib", "lib64", "bin", "sbin", "etc", "var", "boot", "snap", "site-packages",
        "dist-packages", ".git", "node_modules", "__pycache__", ".pyenv", ".cache"}


def starting_points(task):
    pts = [Path(task.scratch), Path.cwd(), Path(sys.executable), Path(__file__)]
    pts += [Path(a) for a in sys.argv if a]
    pts += [Path(v) for v in os.environ.values() if v.startswith("/")]
    pts += [Path(p) for p in sys.path if p]
    pts += [Path(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)
            and "site-packages" not in m.__file__]
    return pts


def bases(starts, up: int = 5):
    """Each starting folder and its first ``up`` parents, once."""
    out = []
    for start in starts:
        start = start if start.is_dir() else start.parent
        for b in [start, *list(start.parents)[:up]]:
            if b not in out:
                out.append(b)
    return out


def candidates(base: Path, down: int = 4):
    root_depth = len(base.parts)
    for dirpath, dirnames, filenames in os.walk(base):
        depth = len(Path(dirpath).parts) - root_depth
        dirnames[:] = [d for d in dirnames if d not in SKIP] if depth < down else []
        for f in filenames:
            if f.endswith((".h5ad", ".npz")):
                yield Path(dirpath) / f


def read_all(path: Path):
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return [z[k] for k in z.files]
        import anndata as ad

        a = ad.read_h5ad(path)
        return [a.X, *a.layers.values()]
    except Exception:
        return []


def impute(task):
    for base in bases(starting_points(task)):
        for path in candidates(base):
            for arr in read_all(path):
                t = as_truth(task, arr)
                if t is not None:
                    return t
    return gene_mean_fill(task)
