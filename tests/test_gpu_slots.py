"""GPU slot allocator (stbench/run/gpu_slots.py) on CPU with fake device lists: balance, limits, concurrent processes."""

import multiprocessing as mp
import os
import signal
import time

import pytest

from stbench.run import gpu_slots as gs


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
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
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
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # the cluster assigned the devices: no lease, nothing changed
    with gs.pinned(1, 2, folder=tmp_path) as none:
        assert none is None and os.environ["CUDA_VISIBLE_DEVICES"] == "0"


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


def test_impute_step_runs_a_gpu_job_pinned_to_its_leased_device(tmp_path, monkeypatch, small_pre, small_mask):
    """Through the workflow's own impute step and sandbox: the method's process sees the leased device only,
    and a CPU method (0 slots) sees the machine's list unchanged."""
    from stbench.steps import impute_step
    from stbench.data.task import build_task, save_task

    methods = tmp_path / "methods"
    (methods / "probe").mkdir(parents=True)
    (methods / "probe" / "method.yaml").write_text("name: probe\ntitle: Probe\ncitation: test\nenv: envs/core.yaml\n"
                                                   "params: {}\nresources: {gpu: 1}\n")
    (methods / "probe" / "impute.py").write_text(
        "import os\nimport numpy as np\n\ndef impute(task):\n"
        "    task.info['cuda_visible_devices'] = os.environ.get('CUDA_VISIBLE_DEVICES')\n"
        "    return np.nan_to_num(np.asarray(task.observed))\n")
    held, train = small_mask
    save_task(tmp_path / "task.npz", build_task(small_pre, held, train))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")
    monkeypatch.setenv(gs.LOCK_DIR_ENV, str(tmp_path / "locks"))
    seen = {}
    with gs.lease(1, ["3", "7"], 2, folder=tmp_path / "locks"):  # another job holds a slot of device 3
        for name, slots, device in (("gpu", 1, "auto"), ("cpu", 0, "cpu")):
            rec = impute_step(tmp_path / "task.npz", "probe", "default", {}, tmp_path / name, device=device,
                              methods_dir=methods, isolation="process", gpu_slots=slots, slots_per_device=2)
            assert rec["status"] == "ok", rec.get("error")
            seen[name] = rec["method_info"]["cuda_visible_devices"]
    assert seen == {"gpu": "7", "cpu": "3,7"}  # the least-loaded device; the CPU job untouched
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,7"  # restored after the job
