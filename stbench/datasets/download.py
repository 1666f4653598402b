"""Download and verify a recipe source's files into ``<cache>/<recipe>/<source>/`` and write its manifest.

Transfers use pooch's downloaders (http(s), ftp, doi) with retries. Every file is written to a
temporary sibling and renamed into place only after its checksum is verified, so a partial or
corrupt download never counts as done and leaves nothing behind. Checksums: a sha256 pinned in the
recipe wins; otherwise the first download records its sha256 in ``<cache>/checksums.lock.yaml``
(trust on first use) and every later download or re-use is checked against it. ``--refresh``
forgets those recorded hashes (see docs/datasets/README.md).

    python -m stbench.datasets.download HBC authors --cache-dir resources/downloads [--refresh]
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

from stbench.atomic import atomic_path, write_json
from stbench.errors import ConfigError, DatasetError

LOCK_NAME = "checksums.lock.yaml"
UNPACKED_MARK = ".stbench-unpacked"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
log = logging.getLogger("stbench.datasets")


def file_digests(path) -> tuple[str, str, int]:
    """(sha256, git blob sha1, size) of a file in one pass (the blob id lets a GitHub copy be verified)."""
    path = Path(path)
    size = path.stat().st_size
    sha, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
            blob.update(chunk)
    return sha.hexdigest(), blob.hexdigest(), size


# --- checksum lock (trust on first use) ----------------------------------------------------------

def lock_path(cache_dir) -> Path:
    return Path(cache_dir) / LOCK_NAME


@contextlib.contextmanager
def _locked(cache_dir):
    """Serialise read-modify-write of the lock file between parallel download jobs."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(cache_dir) / f".{LOCK_NAME}.flock", "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # Windows: no advisory locks; parallel downloads may race on the lock file
            pass
        yield


def read_lock(cache_dir) -> dict:
    """url -> {sha256, size, name, recipe, source, recorded} from the cache's lock file ({} if none)."""
    path = lock_path(cache_dir)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DatasetError(path, f"checksum lock is not valid YAML ({e}); fix or delete it") from None
    return dict(data.get("files") or {})


def _write_lock(cache_dir, files: dict) -> None:
    text = ("# sha256 of every downloaded file whose recipe pins none, recorded on first download.\n"
            "# Later downloads must match. To refresh: delete an entry (or run with --refresh).\n")
    text += yaml.safe_dump({"version": 1, "files": files}, sort_keys=True)
    with atomic_path(lock_path(cache_dir)) as tmp:
        tmp.write_text(text)


def record_hash(cache_dir, url: str, entry: dict) -> None:
    with _locked(cache_dir):
        files = read_lock(cache_dir)
        files[url] = entry
        _write_lock(cache_dir, files)


def forget_hashes(cache_dir, urls) -> int:
    """Drop lock entries for ``urls``; returns how many were dropped."""
    with _locked(cache_dir):
        files = read_lock(cache_dir)
        gone = [u for u in urls if files.pop(u, None) is not None]
        if gone:
            _write_lock(cache_dir, files)
    return len(gone)


# --- one file ------------------------------------------------------------------------------------

def _mismatch(label, what, expected, got) -> DatasetError:
    return DatasetError(label, f"{what} mismatch: expected {expected}, got {got}; the file was not kept "
                               "(upstream changed or the transfer was corrupt; see docs/datasets/README.md to refresh)")


def _verify(path, label, expected_sha256, git_blob, expected_size=None):
    sha, blob, size = file_digests(path)
    if expected_size is not None and size != int(expected_size):  # a weaker pin where only the size is published
        raise _mismatch(label, "size", f"{int(expected_size)} bytes", f"{size} bytes")
    if expected_sha256 and sha != expected_sha256.lower():
        raise _mismatch(label, "sha256", expected_sha256.lower(), sha)
    if git_blob and blob != git_blob.lower():
        raise _mismatch(label, "git blob sha1", git_blob.lower(), blob)
    return sha, size


def download_file(url: str, dest, *, sha256: str | None = None, git_blob: str | None = None, size: int | None = None,
                  retries: int = 3, backoff: float = 1.0, progressbar: bool = False) -> tuple[str, int]:
    """Make ``dest`` a verified copy of ``url``; returns (sha256, size).

    An existing ``dest`` is re-used when it matches the known hash (or when no hash is known: it
    can only be a complete earlier download or a file the user placed there). Each attempt streams
    into a temporary sibling that is renamed onto ``dest`` only after verification.
    """
    import requests

    from pooch.downloaders import choose_downloader

    dest = Path(dest)
    label = f"{dest.name} ({url})"
    if dest.exists():
        try:
            return _verify(dest, label, sha256, git_blob, size)
        except DatasetError as e:
            log.warning("%s; downloading it again", e)
    last = None
    for attempt in range(retries + 1):
        try:
            with atomic_path(dest, suffix=".part") as tmp:
                choose_downloader(url, progressbar=progressbar)(url, str(tmp), None)
                result = _verify(tmp, label, sha256, git_blob, size)
            return result
        except (requests.exceptions.RequestException, OSError, ValueError) as e:
            last = e  # network error, truncated transfer (urllib3 checks Content-Length) or hash mismatch
            if attempt < retries:
                log.info("download of %s failed (%s); retrying", url, e)
                time.sleep(min(backoff * (attempt + 1), 10))
    if isinstance(last, DatasetError):
        raise last
    raise DatasetError(label, f"download failed after {retries + 1} attempt(s): {type(last).__name__}: {last}")


# --- archives ------------------------------------------------------------------------------------

def unpacked_dir(path) -> Path:
    """Where an archive is unpacked: its name without the archive suffix, beside it."""
    path = Path(path)
    for sfx in ARCHIVE_SUFFIXES:
        if path.name.lower().endswith(sfx):
            return path.with_name(path.name[: -len(sfx)])
    return path.with_name(path.name + ".d")


def _safe_members(names, archive) -> None:
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise DatasetError(archive, f"unsafe member path '{n}' in the archive; refusing to unpack")


def unpack(archive, sha256: str) -> Path:
    """Unpack ``archive`` atomically (temp folder, then rename); re-used while its hash is unchanged."""
    archive = Path(archive)
    out = unpacked_dir(archive)
    mark = out / UNPACKED_MARK
    if mark.exists() and mark.read_text().strip() == sha256:
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _safe_members(zf.namelist(), archive)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if m.isfile() or m.isdir()]
                _safe_members([m.name for m in members], archive)
                tf.extractall(tmp, members=members)
        else:
            raise DatasetError(archive, "not a zip or tar archive, but the recipe says unpack: true")
        (tmp / UNPACKED_MARK).write_text(sha256 + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(archive, f"cannot unpack ({type(e).__name__}: {e})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- a recipe source -----------------------------------------------------------------------------

def source_dir(cache_dir, recipe_id: str, source: str) -> Path:
    return Path(cache_dir) / recipe_id / source


def manifest_path(cache_dir, recipe_id: str, source: str, *, reference_only: bool = False) -> Path:
    """``manifest.json`` of a whole source, or ``manifest_reference.json`` of its reference files only."""
    return source_dir(cache_dir, recipe_id, source) / ("manifest_reference.json" if reference_only else "manifest.json")


def fetch(recipe_id: str, source: str, cache_dir, *, recipe: dict | None = None, retries: int = 3,
          backoff: float = 1.0, refresh: bool = False, progressbar: bool = False, reference_only: bool = False) -> Path:
    """Download and verify every file of ``source``; write and return ``<cache>/<id>/<source>/manifest.json``.

    ``reference_only``: only the files with ``role: reference`` (a dataset whose spatial matrix comes
    from another source), written to ``manifest_reference.json``. ``recipe`` replaces the packaged
    recipe (tests, mirrors); ``refresh`` forgets recorded hashes and cached copies first. Raises
    ConfigError for an unknown source, one with no spatial data, or (``reference_only``) no reference.
    """
    from stbench.datasets.recipes import check_recipe, get_recipe, get_source

    if recipe is None:
        recipe = get_recipe(recipe_id)
    else:
        check_recipe(recipe, f"recipe '{recipe_id}'")
    src = get_source(recipe, source)
    if reference_only:
        src = dict(src, files=[f for f in src["files"] if f["role"] == "reference"])
        if not src.get("reference") or not src["files"]:
            raise ConfigError(f"recipe '{recipe_id}': source '{source}' has no reference files to download")
    elif not src.get("spatial"):
        raise ConfigError(f"recipe '{recipe_id}': source '{source}' has no established spatial data "
                          f"({' '.join(str(src.get('description', '')).split())}); use source '{recipe['default_source']}'")
    cache_dir = Path(cache_dir)
    files_dir = source_dir(cache_dir, recipe_id, source) / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    if refresh:
        forget_hashes(cache_dir, [f["url"] for f in src["files"]])
        for f in src["files"]:
            (files_dir / f["name"]).unlink(missing_ok=True)
    locked = read_lock(cache_dir)
    entries = []
    for f in src["files"]:
        dest = files_dir / f["name"]
        pinned = f.get("sha256")
        recorded = (locked.get(f["url"]) or {}).get("sha256")
        sha, size = download_file(f["url"], dest, sha256=pinned or recorded, git_blob=f.get("git_blob_sha1"), size=f.get("size"),
                                  retries=retries, backoff=backoff, progressbar=progressbar)
        if not pinned and not recorded:
            record_hash(cache_dir, f["url"], {"sha256": sha, "size": size, "name": f["name"], "recipe": recipe_id,
                                              "source": source, "recorded": _dt.date.today().isoformat()})
        entry = {"name": f["name"], "url": f["url"], "role": f["role"], "sha256": sha, "size": size,
                 "checksum": "pinned" if pinned else ("locked" if recorded else "recorded now"),
                 "path": f"files/{f['name']}", "unpacked": None}
        if f.get("unpack"):
            entry["unpacked"] = "files/" + unpack(dest, sha).name
        entries.append(entry)
    manifest = {"recipe": recipe_id, "source": source, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "recipe_data": recipe, "files": entries}
    out = manifest_path(cache_dir, recipe_id, source, reference_only=reference_only)
    write_json(out, manifest)
    return out


def main(argv=None) -> int:
    import argparse

    from stbench.errors import StbenchError

    ap = argparse.ArgumentParser(description="download and verify one recipe source")
    ap.add_argument("recipe")
    ap.add_argument("source", nargs="?", default=None, help="default: the recipe's default_source")
    ap.add_argument("--cache-dir", default="resources/downloads")
    ap.add_argument("--refresh", action="store_true", help="forget recorded sha256s and cached copies first")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--reference-only", action="store_true", help="only the source's scRNA-seq reference files")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from stbench.datasets.recipes import get_recipe

        source = args.source or get_recipe(args.recipe)["default_source"]
        print(fetch(args.recipe, source, args.cache_dir, retries=args.retries, refresh=args.refresh, progressbar=True,
                    reference_only=args.reference_only))
    except StbenchError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
