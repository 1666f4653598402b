"""Atomic writes: every output goes to a temporary sibling first and is renamed into place,
so that an interrupted or failed step never leaves a partial file that looks finished.

The finished file gets the mode an ordinary ``open(path, "w")`` would give it (0666 minus the process's umask,
0644 under the usual umask 022): ``mkstemp`` creates its file 0600, which would hide every output from the
user's colleagues on a shared filesystem."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{sfx}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (``/proc/self/status``, kernel >= 4.7);
    elsewhere set and restored at once (``os.umask`` has no read-only form)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_h5ad(path, adata) -> None:
    with atomic_path(path, suffix=".h5ad") as tmp:
        adata.write_h5ad(tmp)


def write_npz(path, **arrays) -> None:
    """A compressed .npz (read with ``np.load``) whose bytes depend only on the arrays: no timestamps,
    so that equal content gives a bit-identical file (the task-file leakage test relies on it)."""
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def write_csv(path, df, **kwargs) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
