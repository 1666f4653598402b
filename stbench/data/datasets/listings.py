"""Resolve a recipe file from its source's own file listing: the URL to download and the checksum or size published there.

    zenodo:   GET {STBENCH_ZENODO_API}/records/<id>      files[]: key|filename, checksum "md5:...", size, links.self|content
    figshare: GET {STBENCH_FIGSHARE_API}/articles/<id>   files[]: name, computed_md5, size, download_url
    geo:      GET {STBENCH_GEO_BASE}/series/<GSEnnn>/<GSE>/suppl/   the HTTPS index (names, sizes rounded as "60M"),
              plus that folder's filelist.txt where GEO writes one (exact bytes of the series' RAW tar)

A recipe names a file by a regular expression over the listing's names (``pattern``, whole-name match,
default: the file's ``name``) and an expected ``count`` (default 1); zero or more matches than expected
is an error that prints what the listing holds.

Written by hand, not with pooch's DOI support, because pooch resolves ``doi:`` through https://doi.org
and its ``ZenodoRepository`` accepts only the host zenodo.org and builds download URLs on it, so it
cannot be pointed at a mirror or at a test server; its listing request also has no status check or
timeout. The transfer itself and the md5 check still use pooch (``download.download_file``). GEO and
figshare publish no DOI listing pooch reads for these files (GEO has no DOI; figshare's is per article).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote
# Imported inside functions on purpose: requests (network, only when a listing is fetched).

ZENODO_API = "https://zenodo.org/api"
FIGSHARE_API = "https://api.figshare.com/v2"
GEO_BASE = "https://ftp.ncbi.nlm.nih.gov/geo"
ENV = {"zenodo": "STBENCH_ZENODO_API", "figshare": "STBENCH_FIGSHARE_API", "geo": "STBENCH_GEO_BASE"}
DEFAULTS = {"zenodo": ZENODO_API, "figshare": FIGSHARE_API, "geo": GEO_BASE}
KINDS = tuple(ENV)
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


class Unresolved(Exception):
    """A source's listing could not be read, or its names do not match the recipe's pattern as expected."""


@dataclass(frozen=True)
class Listed:
    """One file as its source lists it: name, download URL, published md5 (or None) and size in bytes
    (or None), ``size_slack`` the listing's rounding in bytes (0 = exact)."""

    name: str
    url: str
    md5: str | None = None
    size: int | None = None
    size_slack: int = 0
    published_by: str = ""


def base_url(kind: str) -> str:
    """The API / mirror base of ``kind``: its environment variable (tests, mirrors) or the public default."""
    return (os.environ.get(ENV[kind]) or DEFAULTS[kind]).rstrip("/")


def geo_suppl_url(series: str) -> str:
    """``GSE121891`` -> ``<base>/series/GSE121nnn/GSE121891/suppl/`` (GEO's folder rule: the id less its last three digits)."""
    m = re.fullmatch(r"GSE(\d+)", str(series).strip().upper())
    if not m:
        raise Unresolved(f"'{series}' is not a GEO series accession (GSE<digits>)")
    return f"{base_url('geo')}/series/GSE{m.group(1)[:-3]}nnn/GSE{m.group(1)}/suppl/"


def listing_url(kind: str, ident) -> str:
    if kind == "zenodo":
        return f"{base_url('zenodo')}/records/{ident}"
    if kind == "figshare":
        return f"{base_url('figshare')}/articles/{ident}"
    return geo_suppl_url(ident)


def _get(url: str, timeout: float, what: str, *, json: bool = False, missing_ok: bool = False):
    import requests

    try:
        r = requests.get(url, timeout=timeout, headers={"Accept": "application/json"} if json else None)
    except requests.exceptions.RequestException as e:
        raise Unresolved(f"{what} unreachable at {url} ({type(e).__name__}: {e})") from None
    if missing_ok and r.status_code == 404:
        return None
    if r.status_code != 200:
        raise Unresolved(f"{what} unreachable at {url} (HTTP {r.status_code})")
    if not json:
        return r.text
    try:
        return r.json()
    except ValueError:
        raise Unresolved(f"{what} at {url} is not JSON") from None


def _md5(value) -> str | None:
    if not value:
        return None
    value = str(value).lower()
    alg, _, digest = value.rpartition(":")
    if alg not in ("", "md5") or not re.fullmatch(r"[0-9a-f]{32}", digest):
        return None  # another algorithm: not a checksum this harness can use
    return digest


def zenodo_files(record, timeout: float = 60) -> list[Listed]:
    """A Zenodo record's files from its REST listing (both the legacy ``key`` and the InvenioRDM ``filename`` shapes)."""
    url = listing_url("zenodo", record)
    data = _get(url, timeout, f"Zenodo record {record} listing", json=True)
    files = data.get("files") if isinstance(data, dict) else None
    if isinstance(files, dict):  # /records/<id>/files answers {"entries": [...]}
        files = files.get("entries")
    if not isinstance(files, list):
        raise Unresolved(f"Zenodo record {record} listing at {url} has no files[] (is the record restricted or the id wrong?)")
    site = base_url("zenodo").removesuffix("/api")
    out = []
    for f in files:
        name = f.get("key") or f.get("filename")
        if not name:
            continue
        links = f.get("links") or {}
        link = links.get("self") or links.get("content") or links.get("download") or \
            f"{site}/records/{record}/files/{name}?download=1"
        size = f.get("size", f.get("filesize"))
        out.append(Listed(name, link, _md5(f.get("checksum")), int(size) if size is not None else None,
                          published_by=f"Zenodo record {record}"))
    return out


def figshare_files(article, timeout: float = 60) -> list[Listed]:
    """A figshare article's files from ``/v2/articles/<id>`` (latest version): name, download_url, computed_md5, size."""
    url = listing_url("figshare", article)
    data = _get(url, timeout, f"figshare article {article} listing", json=True)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise Unresolved(f"figshare article {article} listing at {url} has no files[]")
    return [Listed(f["name"], f.get("download_url") or f"https://figshare.com/ndownloader/files/{f.get('id')}",
                   _md5(f.get("computed_md5") or f.get("supplied_md5")),
                   int(f["size"]) if f.get("size") is not None else None, published_by=f"figshare article {article}")
            for f in files if f.get("name")]


# Apache autoindex rows as ftp.ncbi.nlm.nih.gov serves them: <a href="NAME">NAME</a>   2018-11-27 13:35  60M
_ROW = re.compile(r'<a href="(?P<href>[^"?/][^"]*)">[^<]*</a>\s+\d{4}-\d{2}-\d{2} \d{2}:\d{2}\s+(?P<size>[\d.]+[KMGT]?|-)')


def parse_size(text: str) -> tuple[int, int]:
    """An autoindex size (``"375M"``, ``"5.7K"``, ``"812"``) -> (bytes, slack): the slack is one unit of the
    last shown digit, since the index rounds (an exact byte count has slack 0)."""
    m = re.fullmatch(r"([\d.]+)([KMGT]?)", text)
    if not m:
        raise ValueError(text)
    num, unit = m.group(1), _UNITS[m.group(2)]
    decimals = len(num.split(".")[1]) if "." in num else 0
    return int(round(float(num) * unit)), (0 if unit == 1 else int(unit * 10 ** -decimals))


def geo_files(series, timeout: float = 60) -> list[Listed]:
    """A GEO series' supplementary files from the HTTPS index of its suppl/ folder; exact sizes from its
    filelist.txt (``Archive`` rows: the RAW tar) override the index's rounded ones."""
    folder = geo_suppl_url(series)
    html = _get(folder, timeout, f"GEO {series} supplementary folder listing")
    exact = {}
    text = _get(folder + "filelist.txt", timeout, f"GEO {series} filelist.txt", missing_ok=True)
    for line in (text or "").splitlines():
        cols = line.split("\t")
        if len(cols) >= 4 and cols[0] == "Archive" and cols[3].strip().isdigit():
            exact[cols[1]] = int(cols[3])
    out = []
    for m in _ROW.finditer(html):
        name = unquote(m.group("href"))
        if name.endswith("/") or m.group("size") == "-":
            continue
        if name in exact:
            size, slack = exact[name], 0
        else:
            size, slack = parse_size(m.group("size"))
        out.append(Listed(name, folder + m.group("href"), None, size, slack, published_by=f"GEO {series} suppl listing"))
    if not out and "<a href" not in html:
        raise Unresolved(f"GEO {series} listing at {folder} is not a directory index")
    return out


def list_files(kind: str, ident, timeout: float = 60) -> list[Listed]:
    """Every file the source ``kind`` (zenodo | figshare | geo) lists under ``ident``."""
    return {"zenodo": zenodo_files, "figshare": figshare_files, "geo": geo_files}[kind](ident, timeout)


def spec_of(resolve: dict) -> tuple[str, object]:
    """(kind, id) of a recipe's ``resolve:`` block ({zenodo: 13329582, pattern: ..., count: 1})."""
    kinds = [k for k in KINDS if k in resolve]
    if len(kinds) != 1:
        raise ValueError(f"resolve: needs exactly one of {', '.join(KINDS)}, got {sorted(resolve)}")
    return kinds[0], resolve[kinds[0]]


def describe(resolve: dict, name: str) -> str:
    """What a recipe looks for, in words: source, listing URL, pattern and count."""
    kind, ident = spec_of(resolve)
    pattern = resolve.get("pattern") or re.escape(name)
    return (f"{kind} {ident} (listing {listing_url(kind, ident)}), file names matching /{pattern}/ "
            f"(expected {int(resolve.get('count', 1))})")


def resolve(resolve: dict, name: str, timeout: float = 60) -> list[Listed]:
    """The files a recipe entry's ``resolve:`` block selects; Unresolved when the listing cannot be read
    or the pattern matches another number of files than ``count``."""
    kind, ident = spec_of(resolve)
    pattern = resolve.get("pattern") or re.escape(name)
    count = int(resolve.get("count", 1))
    listed = list_files(kind, ident, timeout)
    hits = [f for f in listed if re.fullmatch(pattern, f.name)]
    if len(hits) != count:
        names = ", ".join(f.name for f in listed[:40]) + (f", ... ({len(listed)} in all)" if len(listed) > 40 else "")
        raise Unresolved(f"looked for {describe(resolve, name)}: {len(hits)} matched"
                         + (f" ({', '.join(f.name for f in hits)})" if hits else "")
                         + f"; the listing holds: {names or 'no files'}")
    return hits
