"""Run one method in a child process that never held the truth, cannot reach it, and cannot outlive its job.

The parent makes a fresh folder (the *box*) outside the project holding only a copy of the truth-free
task file, the reference (if any), the part of ``stbench`` a method may use (not the simulator, the
loaders or the dataset recipes), the method folder (``lib/``) and ``job.json``. The child runs
``stbench.run.child`` there and leaves ``out/imputed.npz`` and ``out/child.json`` (a short, validated
``info`` block). Everything else of the run's record (method, variant, dataset, seed, isolation,
device, wall time, peak memory, threads) is measured by the parent (``stbench.run.runner``).

Isolation levels (``isolation`` in the config; each row's run.json and every table header name the one used):
- ``bwrap``: the child runs under bubblewrap (https://github.com/containers/bubblewrap) in its own
  user, mount, PID, IPC, UTS, cgroup and network namespaces, as uid 65534 with every capability dropped,
  in a root made of read-only binds of the system folders and the Python environment plus the box
  (read-write, at ``/box``) and fresh ``/tmp``, ``/dev``, ``/proc``: the checkout, the results, the
  download cache, dataset inputs and ``$HOME`` do not exist there, and nothing is hidden beneath a
  mount that the child could undo. It dies with its parent and with its PID namespace.
- ``process``: the box, a clean environment, its own session; what a deliberate cheater can reach
  on the machine is not stopped at this level (README: threat model).
- ``auto``: ``bwrap`` where bubblewrap works (probed once by the parent, before any child), else ``process``.
A level that was asked for and cannot be had fails the job before the method starts; the level is
never changed after a child ran. Containers (``container:`` in method.yaml, ``--use-apptainer``)
wrap the whole job and are recorded as ``apptainer+<level>``.

Every job ends with its whole process tree killed (PID namespace; for ``process``, the session, the
processes re-parented to this one as a child subreaper, and any process carrying the job's token).
"""

from __future__ import annotations

import ctypes
import functools
import io
import json
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil

from stbench.errors import StbenchError

ISOLATION = ("auto", "bwrap", "process")
DEFAULT_TIMEOUT_S = 48 * 3600   # a method that sets none still ends: two days, above any paper-size run measured
SANDBOX_UID = 65534             # "nobody" inside the sandbox's user namespace
BOX = Path("/box")              # the box's path inside bwrap
LOG_CAP = 256 * 1024            # bytes of the child's output kept in the job's log past LIVE_CAP (the tail)
LIVE_CAP = 16 * 2**20          # bytes of the child's output copied into the job's log as they come
LIVE_POLL_S = 0.25              # how often the job's log is brought up to date while the child runs
INFO_CAP = 256 * 1024           # bytes of child.json read at most
MEM_HEADROOM = (2.0, 1024)      # the data limit: max(2 x mem_mb, mem_mb + 1024 MB) (README: resources)
POLL_S = 0.05
_OOM = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_ENV_KEEP = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
             "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "HIP_VISIBLE_DEVICES", "SSL_CERT_FILE",
             "HF_HUB_OFFLINE")
_PACKAGE = Path(__file__).resolve().parents[1]  # stbench/
# the part of stbench a method may use (stbench.run.child's imports and the shared model code): not the simulator,
# the loaders or the dataset recipes, from which a public simulated dataset's truth can be rebuilt
CHILD_MODULES = ("__init__.py", "errors.py", "atomic.py", "run/child.py", "data/task.py", "data/preprocess.py",
                 "data/contract.py", "options.py", "kit/methodkit.py", "kit/progress.py",
                 "kit/reference_protocol.py", "run/runner.py", "kit/diffusion", "run/ensembles.py",
                 "kit/likelihoods.py", "kit/graph_autoencoder.py", "kit/early_stopping.py", "run/__init__.py",
                 "data/__init__.py", "kit/__init__.py")
# system folders bound read-only into the bwrap root (those that exist; symlinks are recreated as symlinks)
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("passwd", "group", "nsswitch.conf", "hosts", "host.conf", "resolv.conf", "ld.so.cache", "ld.so.conf",
        "ld.so.conf.d", "localtime", "alternatives", "ssl", "ca-certificates", "pki", "os-release", "mime.types")
_GPU_DEV = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps", "dri", "kfd")


class SandboxError(StbenchError, RuntimeError):
    """The isolation asked for cannot be had here, or the box cannot be made."""


# ----------------------------------------------------------------------------- availability (parent only)

def _bwrap_exe() -> str | None:
    return shutil.which("bwrap") if sys.platform.startswith("linux") else None


def _interpreter() -> str:
    """The child's interpreter: this one, its folder resolved and its name kept.

    The box binds resolved paths only, so a ``.venv`` that is a symlink (or lies under one) would leave
    ``sys.executable`` dangling inside it (exit 127). The file name is kept unresolved: a venv's
    ``bin/python`` links to the base interpreter, and resolving it would lose the venv (its pyvenv.cfg).
    """
    exe = Path(sys.executable)
    return str(exe.parent.resolve() / exe.name)


def _prefixes() -> list[Path]:
    """The Python environment's folders (bound read-only): the venv, its base interpreter, the executable's folder."""
    ps = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.executable).resolve().parent.parent]
    out = []
    for p in ps:
        p = p.resolve()
        if p != Path("/") and p not in out and not any(str(p).startswith(s + "/") or str(p) == s for s in _SYSTEM):
            out.append(p)
    return out


def _bwrap_args(box: Path | None, *, network: bool, gpu: bool, checkpoint_dir: Path | None = None,
                inputs: dict | None = None) -> list[str]:
    """bubblewrap's arguments: namespaces, no capabilities, uid 65534, read-only system and Python, the box at /box."""
    a = [_bwrap_exe(), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
         "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "stbench"]
    if network:
        a.append("--share-net")
    for s in _SYSTEM:
        p = Path(s)
        if p.is_symlink():
            a += ["--symlink", os.readlink(p), s]
        elif p.is_dir():
            a += ["--ro-bind", s, s]
    for e in _ETC:
        a += ["--ro-bind-try", f"/etc/{e}", f"/etc/{e}"]
    a += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--tmpfs", "/var/tmp"]
    for p in _prefixes():  # after the fresh /tmp: an environment kept under /tmp is bound over it, not hidden by it
        a += ["--ro-bind", str(p), str(p)]
    if gpu:
        for d in sorted(Path("/dev").glob("nvidia[0-9]*")) + [Path("/dev") / n for n in _GPU_DEV]:
            a += ["--dev-bind-try", str(d), str(d)]
        a += ["--ro-bind-try", "/sys", "/sys"]
        for d in _gpu_library_dirs():  # the driver's libraries where the cluster keeps them outside /usr
            a += ["--ro-bind-try", d, d]
    if box is not None:
        a += ["--bind", str(box), str(BOX), "--chdir", str(BOX)]
        for rel, src in _checkpoint_binds(checkpoint_dir).items():  # the only host folders the child may write
            a += ["--bind", str(src), str(BOX / rel)]
        for name, src in (inputs or {}).items():  # the task file and reference: read-only, not copied
            a += ["--ro-bind", str(src), str(BOX / name)]
    return a


def _checkpoint_binds(checkpoint_dir) -> dict[str, Path]:
    """Box-relative mount point -> host folder: one folder at ``checkpoints``, or a mapping name -> folder (an
    ensemble job's members) at ``checkpoints/<name>``."""
    if checkpoint_dir is None:
        return {}
    if isinstance(checkpoint_dir, dict):
        return {f"checkpoints/{name}": Path(d) for name, d in checkpoint_dir.items()}
    return {"checkpoints": Path(checkpoint_dir)}


def _gpu_library_dirs() -> list[str]:
    """Existing absolute folders of $LD_LIBRARY_PATH outside the system folders (passed on with a GPU only)."""
    out = []
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if d.startswith("/") and Path(d).is_dir() and not any(d == s or d.startswith(s + "/") for s in _SYSTEM):
            out.append(str(Path(d).resolve()))
    return list(dict.fromkeys(out))


@functools.lru_cache(maxsize=None)
def bwrap_probe() -> tuple[bool, str]:
    """(works, why not): run the interpreter under the sandbox's own bubblewrap arguments once."""
    exe = _bwrap_exe()
    if not exe:
        return False, "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        r = subprocess.run([*_bwrap_args(None, network=False, gpu=False), _interpreter(), "-I", "-c",
                            "import os; assert os.getuid() == %d" % SANDBOX_UID],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"bwrap could not start: {e}"
    if r.returncode != 0:
        return False, f"bwrap failed (exit {r.returncode}): {r.stderr.decode(errors='replace').strip()[:300]}"
    return True, ""


def bwrap_available() -> bool:
    return bwrap_probe()[0]


def resolve_isolation(requested: str) -> str:
    """The level this job runs under, decided here (the parent) before any child starts."""
    if requested not in ISOLATION:
        raise SandboxError(f"isolation must be one of {', '.join(ISOLATION)}, got {requested!r}")
    if requested == "process":
        return "process"
    ok, why = bwrap_probe()
    if ok:
        return "bwrap"
    if requested == "bwrap":
        raise SandboxError(f"isolation 'bwrap' was requested but bubblewrap cannot run here: {why}. Install it, or set "
                           "`isolation: process` (weaker: README, threat model)")
    return "process"


def _in_container() -> bool:
    return bool(os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"))


# ----------------------------------------------------------------------------- the box

def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def hidden_roots(paths) -> list[Path]:
    """The folders a child must not see (resolved, existing, outermost only, never /): the box must lie outside them."""
    out = []
    for p in paths:
        if not p:
            continue
        p = Path(p).resolve()
        if p.is_file():
            p = p.parent
        if not p.exists() or p == Path("/"):
            continue
        out.append(p)
    out = sorted(set(out), key=lambda q: len(q.parts))
    return [p for i, p in enumerate(out) if not any(_inside(p, q) for q in out[:i])]


def _checkout_root() -> Path | None:
    """The project checkout this package runs from (an editable install), else None."""
    root = _PACKAGE.parent
    return root if (root / "methods").is_dir() and (root / "Snakefile").exists() else None


def _copy_tree(src: Path, dst: Path, only=None) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    if only is None:
        shutil.copytree(src, dst, ignore=ignore)
        return
    dst.mkdir(parents=True)
    for name in only:  # a name may lie in a subpackage ("data/task.py")
        s = src / name
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, dst / name, ignore=ignore)
        elif s.exists():
            shutil.copyfile(s, dst / name)


def _place(src: Path, dst: Path) -> None:
    """Copy (never a link: a hard link shares its inode with the project's file, which the child could rewrite
    for every later method; a symlink names it). Under bwrap the inputs are bound read-only instead."""
    shutil.copyfile(src, dst)


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (state Z in /proc/<pid>/stat)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line[stat_line.rindex(")") + 2:].startswith("Z")
    except (OSError, ValueError):
        return False


def remove_stale_boxes(parent: Path) -> list[Path]:
    """Remove boxes left by a killed run: those whose owner (``<box>.owner``: host and pid of the impute
    process) is a process of this host that is gone."""
    removed = []
    for owner in Path(parent).glob("stbench-*.owner"):
        try:
            host, pid = owner.read_text().split()
            pid = int(pid)
        except (OSError, ValueError):
            continue
        if host != socket.gethostname():
            continue  # another node's box on a shared $TMPDIR: not ours to judge
        try:
            os.kill(pid, 0)
            if not _zombie(pid):
                continue  # still running (a zombie, killed and not yet reaped, is gone)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        box = owner.with_suffix("")
        shutil.rmtree(box, ignore_errors=True)
        owner.unlink(missing_ok=True)
        removed.append(box)
    return removed


def _child_env(inner: Path, threads: int, token: str, gpu: bool = False) -> dict:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    if gpu and os.environ.get("LD_LIBRARY_PATH"):  # the GPU driver's libraries (bound read-only under bwrap)
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    t = str(int(threads))
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=str(inner / "home"), TMPDIR=str(inner / "tmp"),
               PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", MPLBACKEND="Agg",
               MPLCONFIGDIR=str(inner / "tmp"), NUMBA_CACHE_DIR=str(inner / "tmp"), OMP_NUM_THREADS=t,
               MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, NUMEXPR_NUM_THREADS=t, VECLIB_MAXIMUM_THREADS=t,
               CUBLAS_WORKSPACE_CONFIG=":4096:8", STBENCH_JOB=token)
    return env


# ----------------------------------------------------------------------------- supervision (parent only)

def _set_subreaper(on: bool = True) -> bool:
    """Make this process the child subreaper (``on``) or not: while a job runs, its orphans (double-forked daemons)
    are re-parented here instead of to init, so the end-of-job sweep finds them whatever session or environment
    they took. Switched off again after the job, so that a caller's process is left as it was."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _descendants(root_pid: int):
    """psutil processes below ``root_pid`` (this process's other jobs never run at the same time)."""
    try:
        return psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return []


def _carries_token(proc, token: str) -> bool:
    try:
        return proc.environ().get("STBENCH_JOB") == token
    except Exception:  # noqa: BLE001 - gone, or not ours to read
        return False


def kill_job_tree(child_pid: int, token: str, spare=frozenset()) -> int:
    """SIGKILL everything the job left: the child's session, every process below this one (orphans are re-parented
    here, the subreaper) and any process carrying the job's token. Returns how many were killed besides the child.
    The child itself is killed but not reaped (the caller waits for it); ``spare``: this process's children from
    before the job, with their descendants (a caller's own processes)."""
    me = os.getpid()
    killed = set()
    for _ in range(50):  # a forking process may spawn while it is being killed: sweep until nothing is left
        try:
            os.killpg(child_pid, signal.SIGKILL)  # the child's session (start_new_session: pgid == its pid)
        except (ProcessLookupError, PermissionError):
            pass
        spared = set(spare) | {d.pid for s in spare for d in _descendants(s)}
        targets = {p.pid: p for p in _descendants(me) if p.pid not in spared}
        try:
            for p in psutil.process_iter():
                if p.pid not in targets and p.pid != me and _carries_token(p, token):
                    targets[p.pid] = p
        except (psutil.Error, OSError, IndexError):  # no readable /proc: the session and the orphans only
            pass
        alive = {}
        for pid, p in targets.items():
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive[pid] = p
            except psutil.Error:
                pass
        if not alive:
            break
        for p in alive.values():
            try:
                p.kill()
                killed.add(p.pid)
            except psutil.Error:
                pass
        time.sleep(0.01)
    for pid in killed - {child_pid}:  # reap the re-parented orphans (zombies otherwise)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return len(killed - {child_pid})


def _ppid(p) -> int | None:
    try:
        return p.ppid()
    except Exception:  # noqa: BLE001
        return None


def _gpu_model() -> str:
    """The GPU's model from the driver (no CUDA context in the parent)."""
    models = set()
    for info in Path("/proc/driver/nvidia/gpus").glob("*/information"):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    models.add(line.split(":", 1)[1].strip())
        except OSError:
            pass
    return ", ".join(sorted(models)) or "GPU"


def _uses_gpu(pid: int) -> bool:
    """Whether the process holds a GPU device open (read from /proc by the parent)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(("/dev/nvidia", "/dev/dri", "/dev/kfd")):
                return True
        except OSError:
            pass
    return False


def _limit_data(limit_bytes: int | None):
    """preexec_fn: RLIMIT_DATA (private writable memory: heap and anonymous mappings, not reserved address space)."""
    def apply():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
    return apply


def _wait_exit(pidfd, seconds: float) -> None:
    """Sleep up to ``seconds``, returning early when the child exits (its pidfd becomes readable)."""
    if pidfd is None:
        time.sleep(seconds)
        return

    select.select([pidfd], [], [], seconds)


def _is_subreaper() -> bool:
    try:
        flag = ctypes.c_int(0)
        ctypes.CDLL(None, use_errno=True).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
        return bool(flag.value)
    except (OSError, AttributeError):
        return False


def supervise(cmd, *, cwd: Path, env: dict, timeout: float, log, mem_limit_bytes: int | None, token: str,
              gpu_passed: bool = False) -> dict:
    """Run the child, measure it from outside (wall time, peak RSS of the tree, peak threads, GPU use), kill its
    whole tree at the end. The parent reads nothing the child controls here: the log is an unnamed file it opened."""

    was_subreaper = _is_subreaper()
    _set_subreaper()
    try:
        return _supervise(cmd, cwd=cwd, env=env, timeout=timeout, log=log, mem_limit_bytes=mem_limit_bytes,
                          token=token, gpu_passed=gpu_passed)
    finally:
        if not was_subreaper:
            _set_subreaper(False)


def _supervise(cmd, *, cwd, env, timeout, log, mem_limit_bytes, token, gpu_passed) -> dict:
    spare = frozenset(c.pid for c in psutil.Process().children())
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         close_fds=True, start_new_session=True, preexec_fn=_limit_data(mem_limit_bytes))
    try:
        pidfd = os.pidfd_open(p.pid)
    except (AttributeError, OSError):  # before Linux 5.3: plain sleeps
        pidfd = None
    try:
        status, ru, timed_out, peaks = _watch(p, pidfd, t0, timeout, gpu_passed)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM from the scheduler): the job's processes go with it
        kill_job_tree(p.pid, token, spare)
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)
    wall = time.perf_counter() - t0
    killed = kill_job_tree(p.pid, token, spare)
    if status is None:
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    # ru: the child's own usage plus its reaped descendants' (the largest process of the tree, by its peak)
    peak_rss = max(peaks["rss"], ru.ru_maxrss * (1 if sys.platform == "darwin" else 1024))
    return {"exit_code": p.returncode, "timed_out": timed_out, "wall_time_s": wall, "peak_rss_mb": peak_rss / 2**20,
            "peak_threads": peaks["threads"], "peak_processes": peaks["procs"], "gpu_used": peaks["gpu"],
            "leftover_killed": killed}


def _watch(p, pidfd, t0: float, timeout: float, gpu_passed: bool):
    """Wait for the child, sampling its process tree (summed RSS, threads, processes, GPU use), until it exits or
    its time is up. Returns (wait status or None, rusage or None, timed out, peaks)."""
    peak_rss = peak_threads = peak_procs = 0
    gpu = False
    next_gpu_check = 0.0
    while True:
        pid, st, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            return st, ru, False, {"rss": peak_rss, "threads": peak_threads, "procs": peak_procs, "gpu": gpu}
        if time.perf_counter() - t0 > timeout:
            return None, None, True, {"rss": peak_rss, "threads": peak_threads, "procs": peak_procs, "gpu": gpu}
        procs = [psutil.Process(p.pid)] if psutil.pid_exists(p.pid) else []
        procs += _descendants(p.pid)
        rss = threads = 0
        mine = []  # the method's processes (bubblewrap's own two are not counted)
        for q in procs:
            try:
                with q.oneshot():
                    if q.name() == "bwrap":
                        continue
                    rss += q.memory_info().rss
                    threads += q.num_threads()
                    mine.append(q)
            except psutil.Error:
                pass
        procs = mine
        peak_rss, peak_threads, peak_procs = max(peak_rss, rss), max(peak_threads, threads), max(peak_procs, len(procs))
        if gpu_passed and not gpu and time.perf_counter() >= next_gpu_check:
            gpu = any(_uses_gpu(q.pid) for q in procs)
            next_gpu_check = time.perf_counter() + 1.0
        # sample often at first (short runs), then every 0.25 s (a scan of /proc costs a few ms); wake at the exit
        _wait_exit(pidfd, POLL_S if time.perf_counter() - t0 < 2 else 5 * POLL_S)


# ----------------------------------------------------------------------------- reading the child's output

def _open_in(box: Path, rel: str, max_bytes: int) -> bytes | None:
    """The bytes of ``box/rel`` if every component is a real folder/file (no link followed), a regular file, at most
    ``max_bytes``; else None. Opened non-blocking: a FIFO or device in its place never blocks the parent."""
    parts = Path(rel).parts
    fd = os.open(box, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for d in parts[:-1]:
            nfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        os.close(fd)
        return None
    os.close(fd)
    try:
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        with os.fdopen(ffd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
        return data if len(data) <= max_bytes else None
    finally:
        os.close(ffd)


def _str(x, cap: int):
    return None if x is None else str(x)[:cap]


def validate_info(raw) -> dict:
    """The child's ``info`` block, whitelisted: status ('ok', 'failed', 'skipped: <reason>'), error, traceback,
    method_info (a mapping of scalars, or of one level of such mappings), versions, self-reported peak CUDA memory.
    Anything else is dropped; a malformed block is a failed run."""
    if not isinstance(raw, dict):
        return {"status": "failed", "error": "the method's process wrote no valid info block"}
    status = raw.get("status")
    if not (status in ("ok", "failed") or (isinstance(status, str) and status.startswith("skipped: "))):
        return {"status": "failed", "error": f"the method's process wrote an invalid status {str(status)[:80]!r}"}
    out = {"status": status[:120], "error": _str(raw.get("error"), 2000), "traceback": _str(raw.get("traceback"), 8000)}

    def scalar(v):
        return v if isinstance(v, (bool, int, float)) or v is None else str(v)[:200]

    mi = raw.get("method_info")
    if isinstance(mi, dict):
        clean = {}
        for k, v in list(mi.items())[:50]:
            if isinstance(v, dict):
                clean[str(k)[:64]] = {str(kk)[:64]: scalar(vv) for kk, vv in list(v.items())[:50]
                                      if not isinstance(vv, (dict, list))}
            elif isinstance(v, list):
                clean[str(k)[:64]] = [scalar(x) for x in v[:50] if not isinstance(x, (dict, list))]
            else:
                clean[str(k)[:64]] = scalar(v)
        out["method_info"] = clean
    vs = raw.get("versions")
    if isinstance(vs, dict):
        out["versions"] = {str(k)[:64]: str(v)[:64] for k, v in list(vs.items())[:32]}
    cuda = raw.get("peak_cuda_mb")
    if isinstance(cuda, (int, float)) and not isinstance(cuda, bool) and 0 <= cuda < 1e9:
        out["peak_cuda_mb_self_reported"] = float(cuda)
    return out


def read_predictions(box: Path, n_spots: int, n_genes: int):
    """``out/imputed.npz`` as an array, or (None, why). The file: regular, no link followed, at most the float64
    matrix of the task's shape plus 64 KiB; inside it, one array ``imputed`` whose header (checked before any data is
    inflated: no zip bomb) says the task's shape and a float dtype, and whose declared size fits; no pickle."""
    raw = n_spots * n_genes * 8
    data = _open_in(box, "out/imputed.npz", raw + 64 * 1024)
    if data is None:
        return None, f"out/imputed.npz is missing, not a regular file, or larger than {raw + 64 * 1024} bytes"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if zf.namelist() != ["imputed.npy"]:
                return None, f"out/imputed.npz holds {zf.namelist()[:5]}, not one array 'imputed'"
            info = zf.getinfo("imputed.npy")
            if info.file_size > raw + 4096:
                return None, f"out/imputed.npz declares {info.file_size} bytes, more than the task's matrix"
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            if tuple(shape) != (n_spots, n_genes) or dtype.kind != "f" or dtype.itemsize > 8:
                return None, f"out/imputed.npz holds a {dtype} array of shape {tuple(shape)}, expected float " \
                             f"({n_spots}, {n_genes})"
            with zf.open(info) as fh:
                return np.lib.format.read_array(fh, allow_pickle=False), None
    except Exception as e:  # noqa: BLE001 - a malformed file is the method's failure
        return None, f"out/imputed.npz cannot be read ({type(e).__name__}: {e})"


class _LiveLog:
    """Copies the child's output from the parent's unnamed log file into the job's log while the child runs (every
    ``LIVE_POLL_S``), so that a long job can be watched without a terminal. The parent reads its own descriptor of a
    file it created (the child holds only a write end), so nothing here can block on the child. At most
    ``LIVE_CAP`` bytes are copied live; past that, the last ``LOG_CAP`` bytes are appended at the end."""

    def __init__(self, log, log_file):
        self.log_file, self.copied, self.cut = log_file, 0, False
        self._fd = os.open(f"/proc/self/fd/{log.fileno()}", os.O_RDONLY) if log_file is not None else None
        self._stop = threading.Event()
        self._thread = None
        if self._fd is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _copy(self) -> None:
        with open(self.log_file, "ab") as out:
            while not self.cut:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    return
                if self.copied + len(chunk) > LIVE_CAP:
                    self.cut = True
                    return
                out.write(chunk)
                self.copied += len(chunk)

    def _run(self) -> None:
        while not self._stop.wait(LIVE_POLL_S):
            self._copy()

    def close(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        self._thread.join()
        self._copy()
        if self.cut:  # too much output: the tail, after a marker
            size = os.fstat(self._fd).st_size
            start = max(self.copied, size - LOG_CAP)
            os.lseek(self._fd, start, os.SEEK_SET)
            tail = os.read(self._fd, LOG_CAP)
            with open(self.log_file, "ab") as out:
                out.write(f"\n[... {start - self.copied} bytes of output cut ...]\n".encode() + tail)
        os.close(self._fd)
        self._fd = None


# ----------------------------------------------------------------------------- one job

def run_in_sandbox(method, params: dict, task_file, *, reference_file=None, device: str = "auto", threads: int = 1,
                   hide=(), isolation: str = "auto", timeout: float | None = None, mem_mb: int | None = None,
                   log_file=None, checkpoint_dir=None, shape=None, entry: str = "impute") -> dict:
    """Run ``method`` (a registry.Method) on the task file in its sandbox.

    Returns {'isolation', 'cost': what the parent measured, 'info': the child's validated info block,
    'imputed': array or None}. ``hide``: folders the box must lie outside (results, downloads, dataset
    inputs; the checkout is added). ``shape``: (n_spots, n_genes), which bounds the predictions' size.
    ``checkpoint_dir``: a host folder the child may write (``task.checkpoint_dir``), or a mapping name -> folder
    (each at ``checkpoints/<name>`` in the box: an ensemble's members). ``entry``: ``impute`` (predictions) or
    ``ensemble`` (``params`` maps variant -> params; the child trains them into their checkpoint folders and
    returns no predictions; stbench.run.child).
    """
    if entry not in ("impute", "ensemble"):
        raise ValueError(f"run_in_sandbox: entry must be impute or ensemble, got {entry!r}")
    if entry == "ensemble" and not isinstance(checkpoint_dir, dict):
        raise ValueError("run_in_sandbox: an ensemble job needs a mapping variant -> checkpoint folder")
    # every parameter resolved and validated here, whoever the caller: methods keep no defaults of their own
    params = method.resolve(params) if entry == "impute" else {v: method.resolve(q) for v, q in params.items()}
    level = resolve_isolation(isolation)  # decided before the child, never changed after it ran
    recorded = f"apptainer+{level}" if _in_container() else level
    network = method.network
    timeout = float(timeout) if timeout else DEFAULT_TIMEOUT_S
    gpu = device != "cpu" and any(Path("/dev").glob("nvidia[0-9]*"))
    # RLIMIT_DATA is not applied where a GPU is passed in: CUDA's driver maps large writable regions of its own
    mem_limit = None
    if mem_mb and not gpu:
        mem_limit = int(max(MEM_HEADROOM[0] * mem_mb, mem_mb + MEM_HEADROOM[1]) * 2**20)
    hide_roots = hidden_roots([*hide, _checkout_root(), Path.cwd()])
    tmp_parent = Path(tempfile.gettempdir()).resolve()
    if any(_inside(tmp_parent, h) for h in hide_roots):  # $TMPDIR inside the project: use the system's
        tmp_parent = Path("/tmp")
    if level == "bwrap":
        for p in _prefixes():
            bad = [h for h in hide_roots if _inside(h, p)]
            if bad:
                raise SandboxError(f"the Python environment {p} contains {bad[0]}, which the method must not see; "
                                   "use an environment outside the project and results folders")
    if isinstance(checkpoint_dir, dict):
        bad = [n for n in checkpoint_dir if not isinstance(n, str) or not n or n in (".", "..") or "/" in n
               or "\0" in n]
        if bad:
            raise ValueError(f"run_in_sandbox: checkpoint folder names must be plain names, got {bad[0]!r}")
        checkpoint_dir = {n: Path(d).resolve() for n, d in checkpoint_dir.items()}
    elif checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir).resolve()
    for d in _checkpoint_binds(checkpoint_dir).values():
        d.mkdir(parents=True, exist_ok=True)
    remove_stale_boxes(tmp_parent)
    box = Path(tempfile.mkdtemp(prefix="stbench-", dir=tmp_parent)).resolve()
    owner = box.with_name(box.name + ".owner")  # beside the box, not in it: the child never sees it
    owner.write_text(_owner())
    inner = BOX if level == "bwrap" else box
    token = secrets.token_hex(16)
    try:
        for d in ("tmp", "home", "out", "scratch"):
            (box / d).mkdir()
        lib = box / "lib"
        _copy_tree(_PACKAGE, lib / "stbench", only=CHILD_MODULES)
        (lib / "stbench_methods").mkdir()
        _copy_tree(Path(method.folder), lib / "stbench_methods" / method.name)
        inputs = {"task.npz": Path(task_file).resolve()}
        if reference_file is not None and Path(reference_file).exists():
            inputs["reference.h5ad"] = Path(reference_file).resolve()
        for name, src in inputs.items():
            if level == "bwrap":
                (box / name).touch()  # the mount point of a read-only bind
            else:
                _place(src, box / name)
        ckpt_inner = {}
        for rel, src in _checkpoint_binds(checkpoint_dir).items():
            if level == "bwrap":
                (box / rel).mkdir(parents=True)  # the mount point of a read-write bind
            else:
                (box / rel).parent.mkdir(parents=True, exist_ok=True)
                (box / rel).symlink_to(src, target_is_directory=True)
            ckpt_inner[rel] = str(inner / rel)
        job = {"method": method.name, "entry": entry, "params": params, "device": device, "threads": int(threads),
               "checkpoint_dir": ckpt_inner.get("checkpoints")}
        if isinstance(checkpoint_dir, dict):
            job["checkpoint_dirs"] = {n: ckpt_inner[f"checkpoints/{n}"] for n in checkpoint_dir}
        (box / "job.json").write_text(json.dumps(job, default=str))
        boot = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[:1]; "
                "from stbench.run.child import main; sys.exit(main())")
        cmd = [_interpreter(), "-I", "-c", boot, str(inner / "lib")]
        if level == "bwrap":
            cmd = [*_bwrap_args(box, network=network, gpu=gpu, checkpoint_dir=checkpoint_dir, inputs=inputs), *cmd]
        if log_file is not None:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "a") as fh:
                fh.write(f"--- {method.name}: child process output ({recorded} isolation) ---\n")
        with tempfile.TemporaryFile(dir=tmp_parent) as log:  # unnamed: the child cannot swap it for a FIFO
            live = _LiveLog(log, log_file)  # the output, as it comes, in the job's log (progress lines can be watched)
            try:
                cost = supervise(cmd, cwd=box, env=_child_env(inner, int(threads), token, gpu), timeout=timeout,
                                 log=log, mem_limit_bytes=mem_limit, token=token, gpu_passed=gpu)
            finally:
                live.close()
        raw = _open_in(box, "out/child.json", INFO_CAP)
        try:
            info = validate_info(json.loads(raw) if raw is not None else None)
        except ValueError:
            info = validate_info(None)
        if raw is None:
            info["error"] = (f"the method's process ended without a result (exit code {cost['exit_code']}); "
                             "see its log")
        if cost["timed_out"]:
            info.update(status="failed", error=f"timeout: the method ran past its limit of {timeout:g} s "
                                               "(timeout_s in method.yaml or the config)")
        elif info["status"] == "failed" and mem_limit and (
                any(m in str(info.get("error") or "") for m in _OOM) or (raw is None and cost["exit_code"] < 0)):
            info["error"] = (f"memory limit: the method needed more than its data limit of {mem_limit / 2**20:.0f} MB "
                             f"(declared mem_mb {mem_mb}; README: resources). " + str(info.get("error") or ""))[:2000]
        imputed = None
        if info["status"] == "ok" and entry == "impute":
            if shape is None:
                raise ValueError("run_in_sandbox needs the task's shape to read predictions")
            imputed, why = read_predictions(box, *shape)
            if imputed is None:
                info.update(status="failed", error=why)
        if log_file is not None:  # a failed child's error and traceback close its output in the job's log
            with open(log_file, "a") as fh:
                if info["status"] != "ok":
                    fh.write(f"--- {method.name}: {info['status']}: {info.get('error')}\n")
                    if info.get("traceback"):
                        fh.write(info["traceback"] + ("" if info["traceback"].endswith("\n") else "\n"))
        return {"isolation": recorded, "cost": cost, "info": info, "imputed": imputed,
                "limits": {"timeout_s": timeout, "mem_limit_mb": mem_limit / 2**20 if mem_limit else None,
                           "network": network}}
    finally:
        shutil.rmtree(box, ignore_errors=True)
        owner.unlink(missing_ok=True)
