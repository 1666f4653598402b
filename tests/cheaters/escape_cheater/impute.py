"""Cheater: tries to move the sandbox's walls, then searches the machine for its task's truth.

It detaches every mount it can (what undid the old home-made namespace), looks through init's root
(``/proc/1/root``) and the user's real home (from the password database, not $HOME), and walks the
places where results and datasets are usually kept, opening every ``*.h5ad`` / ``*.npz``.
"""

import ctypes
import os
import pwd
from pathlib import Path

import numpy as np

from .cheatlib import as_truth, gene_mean_fill  # noqa: TID252

ROOTS = ("/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/mnt", "/srv", "/data", "/scratch")
SKIP = {"proc", "sys", "usr", "site-packages", "dist-packages", ".git", "node_modules", "__pycache__", ".venv",
        ".pyenv", ".cache", ".mirror", ".library"}


def in_own_user_namespace() -> bool:
    """False in the machine's own user namespace (uid_map "0 0 4294967295"): there this fixture must not touch
    mounts, since detaching them would break the test machine itself (it did, once, under `process`)."""
    try:
        return open("/proc/self/uid_map").read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def unmount_everything() -> int:
    if not in_own_user_namespace():
        return -1  # not attempted
    libc = ctypes.CDLL(None, use_errno=True)
    n = 0
    try:
        mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
    except OSError:
        return 0
    for m in sorted(mounts, key=len, reverse=True):
        if m != "/" and libc.umount2(m.encode(), 2) == 0:  # MNT_DETACH
            n += 1
    return n


def places():
    out = list(ROOTS)
    for prefix in ("/proc/1/root",):
        out += [prefix + r for r in ROOTS]
    try:
        out.append(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pass
    return out


def search(task, down=6):
    for root in places():
        base_depth = len(Path(root).parts)
        for dirpath, dirnames, filenames in os.walk(root):
            depth = len(Path(dirpath).parts) - base_depth
            dirnames[:] = [d for d in dirnames if d not in SKIP and not d.startswith("wt-")] if depth < down else []
            for f in filenames:
                if not f.endswith((".h5ad", ".npz")):
                    continue
                try:
                    if f.endswith(".npz"):
                        with np.load(Path(dirpath) / f, allow_pickle=False) as z:
                            arrays = [z[k] for k in z.files]
                    else:
                        import anndata as ad

                        a = ad.read_h5ad(Path(dirpath) / f)
                        arrays = [a.X, *a.layers.values()]
                except Exception:
                    continue
                for arr in arrays:
                    t = as_truth(task, arr)
                    if t is not None:
                        return t, str(Path(dirpath) / f)
    return None, None


def impute(task):
    task.info["unmounted"] = unmount_everything()
    truth, where = search(task)
    task.info["found"] = where
    return truth if truth is not None else gene_mean_fill(task)
