"""GPU slots: several GPU jobs on one device, each pinned to its device (``CUDA_VISIBLE_DEVICES``).

The workflow counts a device as ``gpu_slots_per_device`` slots (k): ``--resources gpu=N`` becomes N*k
slots for Snakemake's scheduler (workflow/rules/common.smk), and a GPU job asks for the slots its method
block allows (``resources: {gpu_slots: s}``; a whole device, k slots, when it does not say). Snakemake only
counts; which device a job uses is decided here, at job start, by an allocator that is safe when jobs
start at the same moment: one lock file per (device, slot) held with ``fcntl.flock`` for the job's
lifetime (the kernel drops it when the process ends, even on SIGKILL), chosen under one allocator lock,
on the least-loaded device. Written by hand because no library assigns devices to Snakemake jobs
(under SLURM the cluster assigns devices, and this allocator steps aside).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import time
from pathlib import Path

LOCK_DIR_ENV = "STBENCH_GPU_LOCK_DIR"


def slots_requested(resources: dict, slots_per_device: int) -> int:
    """Slots a job asks the scheduler for: 0 for CPU methods; ``gpu_slots`` (at most k) for a one-GPU
    method that allows sharing; otherwise ``gpu`` whole devices (gpu x k)."""
    gpu = int(resources.get("gpu", 0) or 0)
    k = max(1, int(slots_per_device))
    if gpu <= 0:
        return 0
    share = resources.get("gpu_slots")
    if gpu == 1 and share:
        return max(1, min(int(share), k))
    return gpu * k


def visible_devices(env=None) -> list[str]:
    """Device ids this machine lets a job use: ``CUDA_VISIBLE_DEVICES`` when set, else one per
    ``nvidia-smi -L`` line, else none (a CPU machine)."""
    env = os.environ if env is None else env
    vis = env.get("CUDA_VISIBLE_DEVICES")
    if vis is not None:
        return [d.strip() for d in vis.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")] if out.returncode == 0 else []


def lock_dir() -> Path:
    """Per-user, per-machine folder of the slot locks (every run of this user on this machine shares the devices)."""
    d = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"stbench-gpu-slots-{os.getuid()}")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _try_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def lease(n_slots: int, devices: list[str], slots_per_device: int, *, folder: Path | None = None,
          poll_s: float = 0.5, timeout_s: float | None = None):
    """Hold ``n_slots`` slots and yield the device ids they belong to (one device for n_slots <= k, else
    whole devices). Picks the least-loaded device(s); waits while none has room (Snakemake's count makes
    that rare: another run of the same user on the same machine)."""
    k = max(1, int(slots_per_device))
    folder = Path(folder) if folder else lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    whole = -(-n_slots // k) if n_slots > k else 0  # devices taken whole
    if whole > len(devices):
        raise ValueError(f"a job asks for {whole} GPUs but only {len(devices)} are visible ({', '.join(devices) or 'none'})")
    held: list[int] = []
    t0 = time.monotonic()
    while True:
        alloc = os.open(folder / "allocator.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(alloc, fcntl.LOCK_EX)
        try:
            free: dict[str, list[tuple[int, int]]] = {}  # device -> (slot, fd) it could take now
            for d in devices:
                free[d] = []
                for s in range(k):
                    fd = _try_lock(folder / f"gpu{d}-slot{s}.lock")
                    if fd is not None:
                        free[d].append((s, fd))
            want = [k] * whole if whole else [n_slots]
            order = sorted(devices, key=lambda d: (-len(free[d]), devices.index(d)))  # least loaded first
            chosen = [d for d in order if len(free[d]) >= want[0]][:len(want)]
            if len(chosen) == len(want):
                for d, w in zip(chosen, want):
                    held += [fd for _, fd in free[d][:w]]
            for d in devices:  # give back every probe lock we do not keep
                for _, fd in free[d]:
                    if fd not in held:
                        os.close(fd)
        finally:
            fcntl.flock(alloc, fcntl.LOCK_UN)
            os.close(alloc)
        if held:
            break
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"no free GPU slot after {timeout_s} s ({len(devices)} device(s) x {k} slots)")
        time.sleep(poll_s)
    try:
        yield chosen
    finally:
        for fd in held:
            os.close(fd)


@contextlib.contextmanager
def pinned(n_slots: int, slots_per_device: int, devices: list[str] | None = None, **kw):
    """Set ``CUDA_VISIBLE_DEVICES`` to the job's leased device(s) for the duration (restored after); a
    CPU job (0 slots), a machine without GPUs, or a SLURM job (the cluster gives it its own GPUs, each
    numbered from 0 inside the job, so lock files shared on a node would mix different devices) changes
    nothing and yields None."""
    if n_slots <= 0 or os.environ.get("SLURM_JOB_ID"):
        yield None
        return
    devices = visible_devices() if devices is None else devices
    if not devices:
        yield None
        return
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    with lease(n_slots, devices, slots_per_device, **kw) as chosen:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
        try:
            yield chosen
        finally:
            if old is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = old
