"""Run one method in a child process that never held the truth and cannot find it nearby.

The sandbox is a fresh temporary folder outside the project (``$TMPDIR``) holding only a copy of the
truth-free task file, the reference (if any), a copy of the ``stbench`` package and of the method
folder (``lib/``), and ``job.json`` (method name, parameters, device). The child's working directory
is that folder; its environment is a short whitelist with no project path; its output and logs stay
in the folder until the parent moves them into ``results/``.

Isolation levels (recorded in run.json as ``isolation``):
- ``namespace`` (used when the kernel allows unprivileged user namespaces): the child also runs in
  its own user + mount namespace where the project checkout, the results and download folders and
  the dataset's input folders are empty (a tmpfs over each; the Python environment is bound back),
  and other processes' ``/proc`` entries are closed to it.
- ``process``: the sandbox folder and environment only. A method that deliberately scans the whole
  machine is not stopped at this level: run it in a container (``container:`` in method.yaml).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ISOLATION = ("auto", "namespace", "process")
_ENV_KEEP = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "CUDA_VISIBLE_DEVICES",
             "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "HIP_VISIBLE_DEVICES",
             "SSL_CERT_FILE", "HF_HUB_OFFLINE")
_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def namespace_available() -> bool:
    """True where ``unshare --user --map-root-user --mount`` works (and can mount a tmpfs)."""
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return False
    try:
        r = subprocess.run([exe, "-r", "-m", "--", "/bin/sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null || "
                            "mount -t tmpfs none /tmp"], capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def hidden_roots(paths) -> list[Path]:
    """The folders to empty in the child's view: resolved, existing, outermost only, never / or $HOME."""
    home = Path.home().resolve()
    out = []
    for p in paths:
        if not p:
            continue
        p = Path(p).resolve()
        if p.is_file():
            p = p.parent
        if not p.exists() or p == Path("/") or p == home or _inside(home, p):
            continue
        out.append(p)
    out = sorted(set(out), key=lambda q: len(q.parts))
    return [p for i, p in enumerate(out) if not any(_inside(p, q) for q in out[:i])]


TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # private in the child (as systemd's PrivateTmp): other runs' files live there


def _namespace_script(hide: list[Path], keep: list[Path], binds=()) -> str:
    """Shell commands run inside the new mount namespace before the child starts: an empty tmpfs over
    each hidden folder, then each kept folder inside one of them (the sandbox, the Python environment)
    bound back from a file descriptor opened before the hiding, then each ``(source, target)`` of
    ``binds`` (the job's checkpoint folder onto ``<box>/checkpoints``) bound the same way."""
    lines = ["set -e"]
    binds = list(binds)
    kept = list(dict.fromkeys(k for k in keep if any(_inside(k, h) for h in hide)))[:7 - len(binds)]  # sh: fds 3-9
    targets = [(k, k) for k in kept] + [(Path(src), Path(dst)) for src, dst in binds]
    for i, (src, _) in enumerate(targets):
        lines.append(f"exec {3 + i}< {shlex.quote(str(src))}")
    for h in hide:
        mode = "1777" if str(h) in TEMP_DIRS else "755"
        lines.append(f"mount -t tmpfs -o mode={mode} stbench-hidden {shlex.quote(str(h))}")
    for i, (_, dst) in enumerate(targets):
        lines.append(f"mkdir -p {shlex.quote(str(dst))}")
        lines.append(f"mount --no-canonicalize --rbind /proc/self/fd/{3 + i} {shlex.quote(str(dst))}")
        lines.append(f"exec {3 + i}<&-")
    lines.append(': > "$STBENCH_NS_READY"')  # the namespace is set up: what fails from here on is the method's
    lines.append("unset STBENCH_NS_READY")
    lines.append('exec "$@"')
    return "\n".join(lines)


def _child_env(box: Path, threads: int, hide: list[Path]) -> dict:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if p and not any(_inside(Path(p).resolve(), h) for h in hide)]
    env.update(PATH=os.pathsep.join(path) or "/usr/bin:/bin", TMPDIR=str(box / "tmp"), PYTHONHASHSEED="0",
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", MPLBACKEND="Agg", MPLCONFIGDIR=str(box / "tmp"),
               NUMBA_CACHE_DIR=str(box / "tmp"), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), CUBLAS_WORKSPACE_CONFIG=":4096:8")
    return env


def _checkout_root() -> Path | None:
    """The project checkout this package runs from (an editable install), else None."""
    root = _PACKAGE.parent
    return root if (root / "methods").is_dir() and (root / "Snakefile").exists() else None


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))


def _place(src: Path, dst: Path) -> None:
    """Hard-link when possible (large references), else copy; never a symlink (it would name the source)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _pump(src, sinks) -> None:
    """Copy the child's output, as it comes, to each sink (flushed: the job log can be watched live)."""
    fd = src.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        for sink in sinks:
            sink.write(chunk)
            sink.flush()


def _run_child(cmd, box: Path, env: dict, timeout, tee=None):
    """Run the child with its output in the sandbox's log and, as it comes, in ``tee`` (the job's log,
    opened by the parent). The child writes to a pipe, never to an inherited file of the project."""
    import threading

    env = {**env, "STBENCH_NS_READY": str(box / ".ns-ready")}
    with open(box / "child.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=box, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, close_fds=True)
        pump = threading.Thread(target=_pump, args=(proc.stdout, [log] + ([tee] if tee is not None else [])),
                                daemon=True)
        pump.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        pump.join(timeout=10)  # a grandchild that kept the pipe open must not hold the job
        return rc


def _owner() -> str:
    import socket

    return f"{socket.gethostname()} {os.getpid()}"


def remove_stale_boxes(parent: Path) -> list[Path]:
    """Remove sandbox folders left by a killed run (a SIGKILL leaves no chance to clean up): those whose
    owner (``<box>.owner``: host and pid of the impute process) is a process of this host that is gone."""
    import socket

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
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        box = owner.with_suffix("")
        shutil.rmtree(box, ignore_errors=True)
        owner.unlink(missing_ok=True)
        removed.append(box)
    return removed


def run_in_sandbox(method, params: dict, task_file, *, reference_file=None, device: str = "auto", threads: int = 1,
                   hide=(), isolation: str = "auto", timeout: float | None = None, log_file=None,
                   checkpoint_dir=None) -> dict:
    """Run ``method`` (a registry.Method) on the task file in a child process.

    Returns {'record': the child's record + isolation + wall time, 'imputed': array or None}.
    ``hide``: folders the child must not see (results, downloads, dataset inputs; the checkout is added).
    ``log_file``: the job's log, which receives the child's output as it comes.
    ``checkpoint_dir``: a host folder for training checkpoints that outlives the sandbox (and a SIGKILL):
    bound read-write at ``<box>/checkpoints`` under namespace isolation; under process isolation the
    child is given the host path itself. job.json's ``checkpoint_dir`` says which; the child hands it to
    the task as ``task.checkpoint_dir``.
    """
    import numpy as np

    if isolation not in ISOLATION:
        raise ValueError(f"isolation must be one of {ISOLATION}, got {isolation!r}")
    use_ns = isolation == "namespace" or (isolation == "auto" and namespace_available())
    if isolation == "namespace" and not namespace_available():
        raise RuntimeError("isolation 'namespace' requested but user namespaces are not available on this machine")
    hide_roots = hidden_roots([*hide, _checkout_root(), Path.cwd()])
    tmp_parent = Path(tempfile.gettempdir()).resolve()
    if any(_inside(tmp_parent, h) for h in hide_roots):  # $TMPDIR inside the project: use the system's
        tmp_parent = Path("/tmp")
    remove_stale_boxes(tmp_parent)
    box = Path(tempfile.mkdtemp(prefix="stbench-", dir=tmp_parent)).resolve()
    owner = box.with_name(box.name + ".owner")  # beside the box, not in it: the child never sees it
    owner.write_text(_owner())
    t0 = time.perf_counter()
    try:
        (box / "tmp").mkdir()
        lib = box / "lib"
        _copy_tree(_PACKAGE, lib / "stbench")
        _copy_tree(Path(method.folder), lib / "stbench_methods" / method.name)
        _place(Path(task_file), box / "task.npz")
        if reference_file is not None and Path(reference_file).exists():
            _place(Path(reference_file), box / "reference.h5ad")
        ckdir = None if checkpoint_dir is None else Path(checkpoint_dir).resolve()
        if ckdir is not None:
            ckdir.mkdir(parents=True, exist_ok=True)

        def write_job(namespace: bool):
            ck = None if ckdir is None else ("checkpoints" if namespace else str(ckdir))
            (box / "job.json").write_text(json.dumps({"method": method.name, "params": params, "device": device,
                                                      "threads": int(threads), "checkpoint_dir": ck}, default=str))

        write_job(use_ns)
        boot = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[:1]; "
                "from stbench.child import main; sys.exit(main())")
        cmd = plain = [sys.executable, "-I", "-c", boot, str(lib)]
        if use_ns:
            keep = [box, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent]
            temp = [Path(t) for t in {*TEMP_DIRS, tempfile.gettempdir()} if Path(t).is_dir()]
            binds = [(ckdir, box / "checkpoints")] if ckdir is not None else []
            script = _namespace_script(hidden_roots([*hide_roots, *temp]), keep, binds)
            cmd = [shutil.which("unshare"), "-r", "-m", "--", "/bin/sh", "-c", script, "stbench-child", *cmd]
        tee = None
        if log_file is not None:  # the child's output goes to the job's log as it comes (progress lines)
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            tee = open(log_file, "ab")
            tee.write(f"--- {method.name}: child process output ({'namespace' if use_ns else 'process'} "
                      f"isolation) ---\n".encode())
            tee.flush()
        try:
            rc = _run_child(cmd, box, _child_env(box, int(threads), hide_roots), timeout, tee)
            if use_ns and isolation == "auto" and not (box / ".ns-ready").exists():
                # the kernel let us probe a namespace but not set this one up: fall back, and say so in the log
                note = b"stbench: namespace setup failed; running with process isolation\n"
                with open(box / "child.log", "ab") as fh:
                    fh.write(note)
                if tee is not None:
                    tee.write(note)
                    tee.flush()
                use_ns = False
                write_job(False)
                rc = _run_child(plain, box, _child_env(box, int(threads), hide_roots), timeout, tee)
        finally:
            if tee is not None:
                tee.close()
        rec_path = box / "out" / "child.json"
        record = json.loads(rec_path.read_text()) if rec_path.exists() else {
            "status": "failed", "error": f"the method's process ended without a result (exit code {rc}); see its log"}
        if rc == "timeout":
            record.update(status="failed", error=f"timed out after {timeout} s")
        record["isolation"] = "namespace" if use_ns else "process"
        record["exit_code"] = rc
        imputed = None
        if record.get("status") == "ok":
            with np.load(box / "out" / "imputed.npz", allow_pickle=False) as z:
                imputed = np.asarray(z["imputed"])
        record["wall_time_s"] = time.perf_counter() - t0
        return {"record": record, "imputed": imputed}
    finally:
        shutil.rmtree(box, ignore_errors=True)
        owner.unlink(missing_ok=True)
