"""Resolve, download and verify a recipe source's files into ``<cache>/<recipe>/<source>/`` and write its manifest.

Where a file comes from: a ``resolve:`` entry is looked up in its source's own file listing at download
time (Zenodo record, figshare article, GEO suppl folder; ``listings``) by a regular expression and an
expected count, and checked against what that listing publishes (Zenodo/figshare md5 and size; GEO
size); a ``url:`` entry is fetched as given (GitHub raw files, pinned by git blob id / sha256). A
sha256 or size pinned in the recipe is always enforced too. Files with no published hash have their
sha256 recorded on first download in ``<cache>/checksums.lock.yaml`` and checked on every later use.

Transfers use pooch's downloaders with retries. Every file is written to a temporary sibling and
renamed into place only after all checks pass, so a partial or corrupt download leaves nothing behind.
A file that cannot be resolved raises DatasetError naming the dataset, what was looked for, what the
listing holds, and where to place the file by hand; a file placed there is then checked and accepted.

    python -m stbench.data.datasets.download HBC authors --cache-dir resources/downloads [--refresh]
"""

from __future__ import annotations

import argparse
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
from stbench.data.datasets import listings
from stbench.data.datasets.listings import Listed
from stbench.data.datasets.recipes import check_recipe, get_recipe, get_source
from stbench.errors import ConfigError, DatasetError, StbenchError
# Imported inside functions on purpose: requests and pooch (network, only when downloading), fcntl (POSIX only).

LOCK_NAME = "checksums.lock.yaml"
UNPACKED_MARK = ".stbench-unpacked"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
log = logging.getLogger("stbench.data.datasets")


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


def forget_source(cache_dir, recipe_id: str, source: str, urls=()) -> int:
    """Drop the lock entries of one recipe source (and of ``urls``); returns how many were dropped."""
    urls = {u for u in urls if u}
    with _locked(cache_dir):
        files = read_lock(cache_dir)
        gone = [u for u, e in files.items() if u in urls or (e.get("recipe"), e.get("source")) == (recipe_id, source)]
        for u in gone:
            files.pop(u)
        if gone:
            _write_lock(cache_dir, files)
    return len(gone)


# --- one file ------------------------------------------------------------------------------------

def _mismatch(label, what, expected, got) -> DatasetError:
    return DatasetError(label, f"{what} mismatch: expected {expected}, got {got}; the file was not kept "
                               "(upstream changed or the transfer was corrupt; see docs/datasets/README.md to refresh)")


def _verify(path, label, expected_sha256, git_blob, expected_size=None, md5=None, size_slack=0):
    """Check a file against every published or pinned value; the md5 with pooch's hasher (a listing's ``md5:``)."""
    sha, blob, size = file_digests(path)
    if expected_size is not None and abs(size - int(expected_size)) > int(size_slack):
        want = f"{int(expected_size)} bytes" + (f" (+/- {int(size_slack)}, the listing rounds)" if size_slack else "")
        raise _mismatch(label, "size", want, f"{size} bytes")
    if md5:
        from pooch import file_hash

        got = file_hash(str(path), alg="md5")
        if got != md5.lower():
            raise _mismatch(label, "md5", md5.lower(), got)
    if expected_sha256 and sha != expected_sha256.lower():
        raise _mismatch(label, "sha256", expected_sha256.lower(), sha)
    if git_blob and blob != git_blob.lower():
        raise _mismatch(label, "git blob sha1", git_blob.lower(), blob)
    return sha, size


def download_file(url: str, dest, *, sha256: str | None = None, git_blob: str | None = None, size: int | None = None,
                  md5: str | None = None, size_slack: int = 0, retries: int = 3, backoff: float = 1.0,
                  progressbar: bool = False) -> tuple[str, int]:
    """Make ``dest`` a verified copy of ``url``; returns (sha256, size).

    Checked against every value given: ``md5`` (what Zenodo and figshare list), ``size`` (+/- ``size_slack``,
    GEO's listing), ``sha256`` (a recipe pin or the lock) and ``git_blob``. An existing ``dest`` is re-used
    when it matches (or when nothing is known: it can only be a complete earlier download or a file the
    user placed there). Each attempt streams through pooch's downloader into a temporary sibling renamed
    onto ``dest`` only after every check passed (``pooch.retrieve`` is not used because it moves the file
    into place after its one hash check, before the size and other checks).
    """
    import requests
    from pooch.downloaders import choose_downloader

    dest = Path(dest)
    label = f"{dest.name} ({url})"
    checks = dict(expected_sha256=sha256, git_blob=git_blob, expected_size=size, md5=md5, size_slack=size_slack)
    if dest.exists():
        try:
            return _verify(dest, label, **checks)
        except DatasetError as e:
            log.warning("%s; downloading it again", e)
    last = None
    for attempt in range(retries + 1):
        try:
            with atomic_path(dest, suffix=".part") as tmp:
                choose_downloader(url, progressbar=progressbar)(url, str(tmp), None)
                result = _verify(tmp, label, **checks)
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


def _lock_entry_for(locked: dict, recipe_id: str, source: str, name: str) -> dict | None:
    """The lock entry recorded for a file by recipe, source and name (its URL may be unknown offline)."""
    for entry in locked.values():
        if (entry.get("recipe"), entry.get("source"), entry.get("name")) == (recipe_id, source, name):
            return entry
    return None


def _by_hand(dest: Path, count: int, src_dir: Path) -> str:
    """How to place a file by hand: where and under which name(s)."""
    if count == 1:
        where = f"save it as {dest}"
    else:
        where = f"save the {count} files, under the names the source gives them, in the folder {dest}/"
    return (f"To place it by hand: download it from the source (any mirror) and {where}, then run the download "
            f"again. A file already there is checked against the source's listing when that can be read, else "
            f"against a pinned or recorded sha256, and accepted (the manifest in {src_dir} says how it was verified; "
            f"see docs/datasets/README.md, 'Placing files by hand').")


def _placed(dest: Path, count: int) -> list[Path]:
    """Files a user placed at ``dest`` (count 1) or in the folder ``dest`` (count > 1); [] if not all there."""
    if count == 1:
        return [dest] if dest.is_file() else []
    found = sorted(p for p in dest.glob("*") if p.is_file() and not p.name.startswith(".")) if dest.is_dir() else []
    return found if len(found) == count else []


def _fetch_entry(f: dict, who: str, recipe_id: str, source: str, cache_dir: Path, files_dir: Path, locked: dict,
                 retries: int, backoff: float, progressbar: bool) -> list[dict]:
    """Resolve, download and verify one recipe file entry; its manifest entries (one per file)."""
    res = f.get("resolve")
    count = int(res.get("count", 1)) if res else 1
    target = files_dir / f["name"]
    looked_for = listings.describe(res, f["name"]) if res else f["url"]
    hint = _by_hand(target, count, files_dir.parent)
    pinned = f.get("sha256")
    if res:
        try:
            items = listings.resolve(res, f["name"])
        except listings.Unresolved as e:
            placed = _placed(target, count)
            if not placed:
                raise DatasetError(who, f"cannot resolve file '{f['name']}': {e}. {hint}") from None
            log.warning("%s: %s; using the file(s) placed at %s", who, e, target)
            return [_accept_placed(f, p, who, recipe_id, source, cache_dir, files_dir, locked, str(e), hint) for p in placed]
        pairs = [(it, target if count == 1 else target / it.name) for it in items]
    else:
        pairs = [(Listed(f["name"], f["url"], published_by="recipe url"), target)]
    out = []
    for item, dest in pairs:
        recorded = None if item.md5 else (locked.get(item.url) or {}).get("sha256")
        size, slack = (f["size"], 0) if f.get("size") is not None else (item.size, item.size_slack)
        try:
            sha, nbytes = download_file(item.url, dest, sha256=pinned or recorded, git_blob=f.get("git_blob_sha1"),
                                        size=size, size_slack=slack, md5=item.md5, retries=retries, backoff=backoff,
                                        progressbar=progressbar)
        except DatasetError as e:
            raise DatasetError(who, f"{e} [looked for: {looked_for}]. {hint}") from None
        if not pinned and (locked.get(item.url) or {}).get("sha256") != sha:  # so an offline rerun can check the copy
            record_hash(cache_dir, item.url, {"sha256": sha, "size": nbytes, "name": dest.name, "recipe": recipe_id,
                                              "source": source, "recorded": _dt.date.today().isoformat()})
        verified = [v for v, ok in ((f"md5 ({item.published_by})", item.md5),
                                    ("size (recipe pin)" if f.get("size") is not None else
                                     f"size{' within ' + str(slack) + ' bytes' if slack else ''} ({item.published_by})",
                                     size is not None),
                                    ("sha256 (recipe pin)", pinned), ("sha256 (lock)", recorded),
                                    ("git blob sha1 (recipe pin)", f.get("git_blob_sha1"))) if ok]
        out.append(_entry(f, dest, files_dir, item.url, sha, nbytes, verified, looked_for,
                          "pinned" if pinned else "listing md5" if item.md5 else "locked" if recorded else "recorded now"))
    return out


def _accept_placed(f, dest, who, recipe_id, source, cache_dir, files_dir, locked, reason, hint) -> dict:
    """A file placed by hand whose source listing cannot be used: checked against a pin or the lock, then accepted."""
    pinned = f.get("sha256")
    rec = _lock_entry_for(locked, recipe_id, source, dest.name)
    known = pinned or (rec or {}).get("sha256")
    try:
        sha, nbytes = _verify(dest, f"{dest.name} (placed by hand)", known, f.get("git_blob_sha1"), f.get("size"))
    except DatasetError as e:
        raise DatasetError(who, f"{e}. {hint}") from None
    url = (rec or {}).get("url") or f"file://{dest}"
    if not known:
        record_hash(cache_dir, url, {"sha256": sha, "size": nbytes, "name": dest.name, "recipe": recipe_id,
                                     "source": source, "recorded": _dt.date.today().isoformat(), "placed_by_hand": True})
    verified = [v for v, ok in (("sha256 (recipe pin)", pinned), ("sha256 (lock)", known and not pinned),
                                ("git blob sha1 (recipe pin)", f.get("git_blob_sha1")),
                                ("size (recipe pin)", f.get("size"))) if ok]
    entry = _entry(f, dest, files_dir, url, sha, nbytes, verified, reason,
                   "locked" if rec and not rec.get("placed_by_hand") else "placed by hand")
    entry["not_verified_against_source"] = reason
    return entry


def _entry(f, dest, files_dir, url, sha, nbytes, verified, looked_for, checksum) -> dict:
    entry = {"name": dest.name, "url": url, "role": f["role"], "sha256": sha, "size": nbytes, "checksum": checksum,
             "verified_by": verified, "resolved_from": looked_for,
             "path": dest.relative_to(files_dir.parent).as_posix(), "unpacked": None}
    if f.get("unpack"):
        entry["unpacked"] = unpack(dest, sha).relative_to(files_dir.parent).as_posix()
    return entry


def fetch(recipe_id: str, source: str, cache_dir, *, recipe: dict | None = None, retries: int = 3,
          backoff: float = 1.0, refresh: bool = False, progressbar: bool = False, reference_only: bool = False) -> Path:
    """Resolve, download and verify every file of ``source``; write and return ``<cache>/<id>/<source>/manifest.json``.

    A file entry with ``resolve:`` is found in its source's own listing (Zenodo, figshare, GEO; see
    ``listings``) and checked against the md5 or size published there; one with ``url:`` is fetched as
    is. ``reference_only``: only the files with ``role: reference`` (a dataset whose spatial matrix comes
    from another source), written to ``manifest_reference.json``. ``recipe`` replaces the packaged
    recipe (tests, mirrors); ``refresh`` forgets recorded hashes and cached copies first. Raises
    ConfigError for an unknown source, one with no spatial data, or (``reference_only``) no reference;
    DatasetError naming the dataset, what was looked for and how to place the file by hand when a file
    cannot be resolved or verified.
    """
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
        forget_source(cache_dir, recipe_id, source, [f.get("url") for f in src["files"]])
        for f in src["files"]:
            p = files_dir / f["name"]
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    locked = read_lock(cache_dir)
    who = f"dataset {recipe_id} (source {source})"
    entries = []
    for f in src["files"]:
        entries += _fetch_entry(f, who, recipe_id, source, cache_dir, files_dir, locked, retries, backoff, progressbar)
    manifest = {"recipe": recipe_id, "source": source, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "recipe_data": recipe, "files": entries}
    out = manifest_path(cache_dir, recipe_id, source, reference_only=reference_only)
    write_json(out, manifest)
    return out


def main(argv=None) -> int:
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
        source = args.source or get_recipe(args.recipe)["default_source"]
        print(fetch(args.recipe, source, args.cache_dir, retries=args.retries, refresh=args.refresh, progressbar=True,
                    reference_only=args.reference_only))
    except StbenchError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
