"""Atomic writes leave files with the permissions of the user's umask (an ordinary write's), not mkstemp's 0600."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from stbench import atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_every_writer_respects_the_umask(tmp_path, umask, mask, mode):
    os.umask(mask)
    assert atomic.current_umask() == mask
    atomic.write_text(tmp_path / "a.txt", "x")
    atomic.write_json(tmp_path / "a.json", {"a": 1})
    atomic.write_csv(tmp_path / "a.csv", pd.DataFrame({"a": [1]}))
    atomic.write_npz(tmp_path / "a.npz", x=np.zeros(2))
    with atomic.atomic_path(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"png")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary write gives, for comparison
    for name in ("a.txt", "a.json", "a.csv", "a.npz", "a.png", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_a_failed_write_leaves_nothing(tmp_path, umask):
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
