"""What made a run's tables: the code (git commit and whether the tree had uncommitted changes), the config (its
files, their hashes and a hash of the resolved config), the command line, package versions, the hardware, the
datasets' checksums and the protocol. Written as ``tables/provenance.json`` and shown at the top of the report,
so that a table copied into a paper can be traced back to what produced it.

Everything here is read from the system (git, importlib.metadata, /proc, torch.cuda); no library gathers this set.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from stbench import __version__
from stbench.atomic import write_json
# Imported inside functions on purpose: torch (import cost; only to record its CUDA build).

# the packages a reader asks about first (issue 27), then the rest of the numeric stack
PACKAGES = ("stbench", "torch", "scanpy", "anndata", "scvi-tools", "tangram-sc", "snakemake", "numpy", "scipy", "pandas",
            "scikit-learn", "torch-geometric", "POT", "matplotlib", "seaborn")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(config: dict) -> str:
    """sha256 of the resolved config as canonical JSON (sorted keys): equal configs, equal hash, whatever the
    file's layout or comments."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def git_info(repo_dir) -> dict:
    """The commit of ``repo_dir`` and whether tracked files differ from it (``dirty``); ``None`` outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "note": f"git could not run: {e}"}
    if head.returncode != 0:
        return {"commit": None, "dirty": None, "note": f"not a git checkout: {str(repo_dir)}"}
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    branch = git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip() or None
    return {"commit": head.stdout.strip(), "branch": branch, "dirty": bool(changed), "changed_files": changed[:50],
            "repo": str(repo_dir)}


def package_versions(names=PACKAGES) -> dict:
    """Python's version and each installed package's ('not installed' otherwise), torch's CUDA and cuDNN builds."""
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    try:
        import torch

        out["torch CUDA build"] = torch.version.cuda or "none (CPU build)"
        out["cuDNN"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "n/a"
    except Exception as e:  # noqa: BLE001 - provenance never stops the report
        out["torch CUDA build"] = f"torch not importable: {type(e).__name__}"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def hardware() -> dict:
    """The machine that wrote the tables: OS, CPU model and cores, memory, and every visible GPU with its memory."""
    gpus = []
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
    except Exception:  # noqa: BLE001
        pass
    return {"platform": platform.platform(), "cpu": _cpu_model(), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gib": _mem_gib(), "gpus": gpus or "none visible", "hostname": platform.node()}


def run_devices(run_files) -> dict:
    """The devices the method runs reported (run.json), with how many runs used each: the runs may have been
    executed elsewhere (a cluster) than the machine that wrote the tables."""
    out: dict[str, int] = {}
    for f in run_files:
        try:
            rec = json.loads(Path(f).read_text())
        except (OSError, ValueError):
            continue
        d = str(rec.get("device") or "n/a")
        out[d] = out.get(d, 0) + 1
    return out


def dataset_checksums(datasets: dict) -> dict:
    """Per dataset: the source's own checksums (prepare.json: the raw files' sha256 for a recipe) and the sha256 of
    the prepared and preprocessed matrices every run of this benchmark read."""
    out = {}
    for name, files in datasets.items():
        entry = {}
        prep = files.get("prepare")
        if prep and Path(prep).exists():
            src = (json.loads(Path(prep).read_text()).get("source") or {})
            entry["source"] = {k: src[k] for k in ("accession", "url", "checksum") if src.get(k)}
        for key in ("prepared", "preprocessed"):
            p = files.get(key)
            if p and Path(p).exists():
                entry[f"{key}_sha256"] = sha256_file(p)
        out[name] = entry
    return out


def _cmdline(pid) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def _parent(pid) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _snakemakes_own(command_line: str) -> bool:
    """A process Snakemake started for a job: its own child (``--target-jobs``) or a rule's script."""
    return "--target-jobs" in command_line or ".snakemake/scripts/" in command_line


def invocation() -> str:
    """The command line that started the workflow. Snakemake runs a local job in a child snakemake process of its
    own (``--target-jobs ...``, through ``sh -c``), and a rule's ``script:`` as ``python .snakemake/scripts/tmp…``;
    the first ancestor that is none of these is the command the user typed, read from ``/proc`` where there is one.
    Elsewhere (another OS, a cluster job) this process's own command line."""
    own = " ".join(sys.argv)
    if not _snakemakes_own(own):
        return own
    pid = os.getppid()
    for _ in range(6):
        if not pid or pid <= 1:
            break
        argv = _cmdline(pid)
        text = " ".join(argv)
        if argv and not _snakemakes_own(text) and not (Path(argv[0]).name in ("sh", "bash", "dash") and "-c" in argv):
            return text
        pid = _parent(pid)
    return own


def collect(*, run: str, config: dict, config_files, command_line: str | None, repo_dir, protocols: dict,
            datasets: dict, run_files=()) -> dict:
    """The provenance record (see the module docstring)."""
    files = []
    for f in config_files or []:
        p = Path(f)
        files.append({"path": str(f), "sha256": sha256_file(p) if p.exists() else None})
    return {
        "run": run,
        "generated_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stbench": __version__,
        "git": git_info(repo_dir),
        "config": {"files": files, "resolved_sha256": config_hash(config), "resolved": config},
        "command_line": command_line if command_line is not None else invocation(),
        "packages": package_versions(),
        "hardware": hardware(),
        "run_devices": run_devices(run_files),
        "datasets": dataset_checksums(datasets),
        "protocol": protocols,
    }


def write_provenance(out_json, **kwargs) -> dict:
    """Collect the record and write it (atomically) to ``out_json``; return it."""
    rec = collect(**kwargs)
    write_json(out_json, rec)
    return rec
