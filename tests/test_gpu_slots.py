"""GPU slot allocator (stbench/gpu_slots.py) on CPU with fake device lists: balance, limits, concurrent processes."""

import multiprocessing as mp
import os
import signal
import time

import pytest

from stbench import gpu_slots as gs


def test_leases_spread_over_devices_and_never_exceed_the_slots(tmp_path):
    import contextlib

    with contextlib.ExitStack() as stack:
        got = [stack.enter_context(gs.lease(1, ["0", "1"], 2, folder=tmp_path))[0] for _ in range(4)]
        assert sorted(got) == ["0", "0", "1", "1"] and got[:2] in (["0", "1"], ["1", "0"])  # least-loaded first
        with pytest.raises(TimeoutError):
            with gs.lease(1, ["0", "1"], 2, folder=tmp_path, poll_s=0.05, timeout_s=0.2):
                pass
    with gs.lease(1, ["0", "1"], 2, folder=tmp_path, timeout_s=1) as d:  # released on exit
        assert d == ["0"]


def test_whole_devices_and_too_many(tmp_path):
    with gs.lease(1, ["0", "1"], 3, folder=tmp_path) as a:
        with gs.lease(3, ["0", "1"], 3, folder=tmp_path) as whole:
            assert whole == [d for d in ["0", "1"] if d != a[0]]  # the device with all 3 slots free
        with gs.lease(6, ["0", "1", "2"], 3, folder=tmp_path) as two:
            assert len(two) == 2 and a[0] not in two
    with pytest.raises(ValueError, match="2 GPUs but only 1"):
        with gs.lease(4, ["0"], 2, folder=tmp_path):
            pass


def test_pinned_sets_and_restores_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert gs.visible_devices() == ["4", "5"]
    with gs.pinned(1, 2, folder=tmp_path) as d:
        assert d == ["4"] and os.environ["CUDA_VISIBLE_DEVICES"] == "4"
        with gs.pinned(2, 2, ["4", "5"], folder=tmp_path, timeout_s=5) as d2:  # a whole device: the other one
            assert d2 == ["5"] and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"
    with gs.pinned(0, 2, folder=tmp_path) as none:  # a CPU job: nothing leased, nothing set
        assert none is None and os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with gs.pinned(1, 2, folder=tmp_path) as none:  # no GPU visible
        assert none is None
    assert gs.visible_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def _worker(folder, out, hold):
    with gs.lease(1, ["0", "1"], 2, folder=folder, poll_s=0.02) as d:
        t0 = time.time()
        time.sleep(hold)
        t1 = time.time()
    with open(out, "a") as fh:
        fh.write(f"{d[0]} {t0} {t1}\n")


def test_concurrent_processes_never_oversubscribe_a_device(tmp_path):
    """10 processes start at once on 2 devices x 2 slots: at no moment does a device hold more than 2."""
    ctx = mp.get_context("spawn")
    out = tmp_path / "log.txt"
    procs = [ctx.Process(target=_worker, args=(tmp_path / "locks", out, 0.4)) for _ in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = [line.split() for line in out.read_text().splitlines()]
    assert len(rows) == 10
    for dev in ("0", "1"):
        spans = [(float(a), float(b)) for d, a, b in rows if d == dev]
        assert spans, f"device {dev} never used"
        for a, _ in spans:  # holders of this device at each start
            assert sum(1 for s, e in spans if s <= a < e) <= 2


def _holder(folder, ready):
    with gs.lease(2, ["0"], 2, folder=folder):
        ready.set()
        time.sleep(60)


def test_a_killed_job_releases_its_slots(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_holder, args=(tmp_path, ready))
    p.start()
    assert ready.wait(30)
    with pytest.raises(TimeoutError):
        with gs.lease(1, ["0"], 2, folder=tmp_path, poll_s=0.05, timeout_s=0.3):
            pass
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with gs.lease(1, ["0"], 2, folder=tmp_path, timeout_s=5) as d:
        assert d == ["0"]
