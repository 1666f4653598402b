"""Files resolved from their source's own listing (Zenodo record, GEO suppl folder, figshare article),
served by a local HTTP server: good download, wrong checksum, missing file, changed listing, GEO size
mismatch, unreachable listing, and placing files by hand. No network."""

import hashlib
import io
import json
import socket
import zipfile

import pytest

from stbench.data.datasets import fetch, get_recipe, list_recipes, load_recipe
from stbench.data.datasets import listings
from stbench.data.datasets.recipes import check_recipe
from stbench.errors import ConfigError, DatasetError
from tests.test_datasets_download import Server, leftovers, sb_files

RECORD = 13329582
GSE = "GSE121891"
GEO_DIR = f"/geo/series/GSE121nnn/{GSE}/suppl/"
PATTERN = r"(?i)(.*[^a-z0-9])?(TOY|Dataset[ _-]?0?99)([^a-z0-9].*)?\.(zip|tar\.gz|tgz|tar)"


def md5(b):
    return hashlib.md5(b).hexdigest()


def toy_zip():
    c, loc = sb_files()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Dataset99/Insitu_count.txt", c)
        zf.writestr("Dataset99/Locations.txt", loc)
    return buf.getvalue()


class Sources:
    """A Zenodo-shaped record, a GEO-shaped suppl folder and a figshare-shaped article on one local server."""

    def __init__(self, server, monkeypatch):
        self.s = server
        monkeypatch.setenv("STBENCH_ZENODO_API", f"{server.url}/api")
        monkeypatch.setenv("STBENCH_GEO_BASE", f"{server.url}/geo")
        monkeypatch.setenv("STBENCH_FIGSHARE_API", f"{server.url}/v2")
        self.zenodo, self.geo, self.figshare = {}, {}, {}   # name -> (bytes, listed md5 / listed size text)

    def zen(self, name, body, checksum=None):
        self.zenodo[name] = (body, checksum or f"md5:{md5(body)}")
        self.publish()

    def publish(self, geo_filelist=None):
        f = self.s.files
        f.clear()
        entries = []
        for name, (body, checksum) in self.zenodo.items():
            link = f"{self.s.url}/api/records/{RECORD}/files/{name}/content"
            f[f"/api/records/{RECORD}/files/{name}/content"] = body
            entries.append({"key": name, "checksum": checksum, "size": len(body), "links": {"self": link}})
        f[f"/api/records/{RECORD}"] = json.dumps({"id": RECORD, "files": entries}).encode()
        rows = []
        for name, (body, size_text) in self.geo.items():
            f[GEO_DIR + name] = body
            rows.append(f'<a href="{name}">{name}</a>   2018-11-27 13:35  {size_text}')
        f[GEO_DIR] = ('<html><head><title>Index of /geo/series/GSE121nnn/GSE121891/suppl</title></head><body>\n'
                      '<h1>Index of /geo/series/GSE121nnn/GSE121891/suppl</h1>\n<pre>Name   Last modified   Size  <hr>'
                      '<a href="/geo/series/GSE121nnn/GSE121891/">Parent Directory</a>      -\n'
                      + "\n".join(rows) + '\n<hr></pre>\n<a href="https://www.hhs.gov/vulnerability-disclosure-policy/index.html">'
                      'HHS Vulnerability Disclosure</a>\n</body></html>\n').encode()
        if geo_filelist:
            f[GEO_DIR + "filelist.txt"] = geo_filelist.encode()
        fs = [{"id": i, "name": n, "size": len(b), "computed_md5": c,
               "download_url": f"{self.s.url}/ndownloader/files/{i}"} for i, (n, (b, c)) in enumerate(self.figshare.items())]
        for i, (n, (b, _)) in enumerate(self.figshare.items()):
            f[f"/ndownloader/files/{i}"] = b
        f["/v2/articles/5829687"] = json.dumps({"id": 5829687, "files": fs}).encode()


@pytest.fixture
def sources(server, monkeypatch):
    return Sources(server, monkeypatch)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def toy_recipe(ref_files=None):
    return {
        "id": "TOY", "title": "toy", "tissue": "t", "species": "s", "platform": "p", "citation": "c",
        "paper": {"table4": {"geo": GSE, "spots": 26}}, "default_source": "authors", "reference_source": "none",
        "sources": {"authors": {
            "accession": "toy", "expect": {"spots": [25, 26], "genes": [12, 12]},
            "files": [{"name": "TOY.zip", "resolve": {"zenodo": RECORD, "pattern": PATTERN, "count": 1},
                       "unpack": True, "role": "spatial"}] + (ref_files or []),
            "spatial": {"format": "spatialbenchmarking", "counts": "TOY/**/Insitu_count.txt", "locations": "TOY/**/Location*.txt"},
        }},
    }


def test_good_download_checks_listing_md5_and_geo_size(sources, tmp_path):
    body = toy_zip()
    ref = b"x" * 3000
    sources.geo["GSE121891_ref.csv.gz"] = (ref, "2.9K")      # 3000 bytes as GEO's index rounds them
    sources.geo["GSE121891_other.txt"] = (b"other", "5")
    sources.figshare["annotations_FACS.csv"] = (b"cell,label\n", md5(b"cell,label\n"))
    sources.zen("stMCDI_Dataset99.zip", body)
    sources.zen("README.md", b"readme")                        # does not match the pattern
    r = toy_recipe([{"name": "GSE121891_ref.csv.gz", "resolve": {"geo": GSE}, "role": "spatial"},
                    {"name": "annotations.csv", "resolve": {"figshare": 5829687, "pattern": r"(?i)annotations_facs\.csv"},
                     "role": "spatial"}])
    man = json.loads(fetch("TOY", "authors", tmp_path, recipe=r, retries=0).read_text())
    by = {f["name"]: f for f in man["files"]}
    z = by["TOY.zip"]
    assert z["checksum"] == "listing md5" and z["url"].endswith(f"/api/records/{RECORD}/files/stMCDI_Dataset99.zip/content")
    assert z["verified_by"][:2] == [f"md5 (Zenodo record {RECORD})", f"size (Zenodo record {RECORD})"]
    assert z["unpacked"] == "files/TOY" and z["sha256"] == hashlib.sha256(body).hexdigest()
    assert f"/{PATTERN}/" in z["resolved_from"] and f"/api/records/{RECORD}" in z["resolved_from"]
    g = by["GSE121891_ref.csv.gz"]
    assert g["checksum"] == "recorded now" and g["verified_by"] == ["size within 102 bytes (GEO GSE121891 suppl listing)"]
    assert g["url"].endswith(GEO_DIR + "GSE121891_ref.csv.gz")
    assert by["annotations.csv"]["checksum"] == "listing md5"
    assert (tmp_path / "TOY/authors/files/annotations.csv").read_bytes() == b"cell,label\n"
    adata, _ = load_recipe("TOY", "authors", tmp_path)
    assert adata.shape == (25, 12)
    assert leftovers(tmp_path) == []
    # a rerun re-reads the listings but re-uses the verified files
    n = len([h for h in sources.s.hits if h.endswith("/content")])
    fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    assert len([h for h in sources.s.hits if h.endswith("/content")]) == n


def test_wrong_checksum_names_dataset_both_md5s_and_leaves_nothing(sources, tmp_path):
    body = toy_zip()
    sources.zen("TOY.zip", body, checksum="md5:" + "0" * 32)
    with pytest.raises(DatasetError) as e:
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=1, backoff=0)
    msg = str(e.value)
    assert msg.startswith("dataset TOY (source authors): ")
    assert f"md5 mismatch: expected {'0' * 32}, got {md5(body)}" in msg
    assert f"zenodo {RECORD}" in msg and str(tmp_path / "TOY/authors/files/TOY.zip") in msg and "by hand" in msg
    assert not (tmp_path / "TOY/authors/files/TOY.zip").exists() and leftovers(tmp_path) == []
    assert sources.s.hits.count(f"/api/records/{RECORD}/files/TOY.zip/content") == 2  # retried once


def test_missing_file_then_placed_by_hand_is_accepted(sources, tmp_path):
    sources.zen("HBC.zip", toy_zip())                          # the record lists no TOY archive
    with pytest.raises(DatasetError) as e:
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)
    msg = str(e.value)
    dest = tmp_path / "TOY/authors/files/TOY.zip"
    assert "dataset TOY (source authors): cannot resolve file 'TOY.zip'" in msg
    assert f"{sources.s.url}/api/records/{RECORD}" in msg and PATTERN in msg and "0 matched" in msg
    assert "the listing holds: HBC.zip" in msg and f"save it as {dest}" in msg
    assert not (tmp_path / "TOY/authors/manifest.json").exists()
    # the documented manual path: put the archive there and run the download again
    dest.write_bytes(toy_zip())
    man = json.loads(fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0).read_text())
    f = man["files"][0]
    assert f["checksum"] == "placed by hand" and "0 matched" in f["not_verified_against_source"]
    assert load_recipe("TOY", "authors", tmp_path)[0].shape == (25, 12)
    # once recorded, a different file placed there later is refused
    dest.write_bytes(toy_zip() + b"x")
    with pytest.raises(DatasetError, match=r"dataset TOY \(source authors\): TOY\.zip \(placed by hand\): sha256 mismatch"):
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)


def test_listed_file_missing_on_the_server(sources, tmp_path):
    sources.zen("TOY.zip", toy_zip())
    del sources.s.files[f"/api/records/{RECORD}/files/TOY.zip/content"]
    with pytest.raises(DatasetError, match=r"dataset TOY \(source authors\): TOY\.zip .*404.*looked for: zenodo 13329582.*by hand"):
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)
    assert leftovers(tmp_path) == [] and not (tmp_path / "TOY/authors/files/TOY.zip").exists()


def test_changed_listing_two_matches_or_renamed(sources, tmp_path):
    sources.zen("TOY.zip", toy_zip())
    sources.zen("Dataset99.tar.gz", b"another upload")          # a file added: the pattern now matches two
    with pytest.raises(DatasetError, match=r"2 matched \(TOY\.zip, Dataset99\.tar\.gz\); the listing holds"):
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)
    sources.zenodo = {"TOY_v2.rar": (b"renamed", "md5:" + md5(b"renamed"))}  # renamed out of the pattern
    sources.publish()
    with pytest.raises(DatasetError, match=r"0 matched; the listing holds: TOY_v2\.rar"):
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)
    assert leftovers(tmp_path) == []
    # an expected count above one: the files are kept under their own names in a folder
    sources.zenodo = {"TOY_a.zip": (b"a", f"md5:{md5(b'a')}"), "TOY_b.zip": (b"bb", f"md5:{md5(b'bb')}")}
    sources.publish()
    r = toy_recipe()
    r["sources"]["authors"]["files"][0].update(resolve={"zenodo": RECORD, "pattern": r"TOY_.\.zip", "count": 2}, unpack=False)
    from stbench.data.datasets.download import _fetch_entry, read_lock

    out = _fetch_entry(r["sources"]["authors"]["files"][0], "dataset TOY", "TOY", "authors", tmp_path,
                       tmp_path / "f", read_lock(tmp_path), 0, 0, False)
    assert [e["path"] for e in out] == ["f/TOY.zip/TOY_a.zip", "f/TOY.zip/TOY_b.zip"]
    assert (tmp_path / "f/TOY.zip/TOY_b.zip").read_bytes() == b"bb"


def test_geo_size_mismatch_and_exact_filelist_size(sources, tmp_path):
    sources.zen("TOY.zip", toy_zip())
    sources.geo["GSE121891_ref.csv.gz"] = (b"y" * 1000, "2.5K")   # the index says ~2560 bytes
    r = toy_recipe([{"name": "GSE121891_ref.csv.gz", "resolve": {"geo": GSE}, "role": "spatial"}])
    sources.publish()
    with pytest.raises(DatasetError, match=r"GSE121891_ref\.csv\.gz .*size mismatch: expected 2560 bytes \(\+/- 102, "
                                           r"the listing rounds\), got 1000 bytes.*looked for: geo GSE121891"):
        fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    assert not (tmp_path / "TOY/authors/files/GSE121891_ref.csv.gz").exists() and leftovers(tmp_path) == []
    # a RAW tar: filelist.txt gives its exact size, which overrides the index's rounded one
    sources.geo = {"GSE121891_RAW.tar": (b"z" * 1001, "1.0K")}
    sources.publish(geo_filelist="#Archive/File\tName\tTime\tSize\tType\n"
                                 "Archive\tGSE121891_RAW.tar\t01/01/2020 10:00:00\t1000\tTAR\n"
                                 "File\tGSM1_a.csv.gz\t01/01/2020 10:00:00\t900\tCSV\n")
    listed = {f.name: f for f in listings.geo_files(GSE)}
    assert (listed["GSE121891_RAW.tar"].size, listed["GSE121891_RAW.tar"].size_slack) == (1000, 0)
    r = toy_recipe([{"name": "GSE121891_RAW.tar", "resolve": {"geo": GSE}, "role": "spatial"}])
    with pytest.raises(DatasetError, match=r"size mismatch: expected 1000 bytes, got 1001 bytes"):
        fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    # a recipe's size pin wins over the listing and is exact
    r["sources"]["authors"]["files"][1]["size"] = 1001
    man = json.loads(fetch("TOY", "authors", tmp_path, recipe=r, retries=0).read_text())
    assert man["files"][1]["verified_by"] == ["size (recipe pin)"]


def test_unreachable_listing_names_url_and_manual_path(monkeypatch, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STBENCH_ZENODO_API", f"http://127.0.0.1:{port}/api")
    with pytest.raises(DatasetError, match=rf"Zenodo record {RECORD} listing unreachable at http://127\.0\.0\.1:{port}/api/records/{RECORD} "
                                           r"\(ConnectionError.*save it as .*TOY\.zip"):
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)


def test_listing_shapes_and_sizes(sources):
    """InvenioRDM-shaped entries (filename, bare md5, no links) get the record's download URL; sizes parse."""
    sources.s.files[f"/api/records/{RECORD}"] = json.dumps({"id": RECORD, "files": [
        {"filename": "A.zip", "checksum": "d41d8cd98f00b204e9800998ecf8427e", "filesize": 0},
        {"filename": "B.zip", "checksum": "sha256:abc", "filesize": 3}]}).encode()
    a, b = listings.zenodo_files(RECORD)
    assert a == listings.Listed("A.zip", f"{sources.s.url}/records/{RECORD}/files/A.zip?download=1",
                                "d41d8cd98f00b204e9800998ecf8427e", 0, 0, f"Zenodo record {RECORD}")
    assert b.md5 is None  # not an md5: no checksum this harness uses (size still checked)
    assert listings.parse_size("375M") == (375 * 1024 ** 2, 1024 ** 2)
    assert listings.parse_size("5.7K") == (5837, 102) and listings.parse_size("812") == (812, 0)
    assert listings.geo_suppl_url("GSE1234").endswith("/geo/series/GSE1nnn/GSE1234/suppl/")
    assert listings.geo_suppl_url("GSE152048").endswith("/series/GSE152nnn/GSE152048/suppl/")
    sources.s.files[f"/api/records/{RECORD}"] = b"<html>not json</html>"
    with pytest.raises(listings.Unresolved, match="is not JSON"):
        listings.zenodo_files(RECORD)


def test_recipe_file_origin_is_checked():
    r = toy_recipe()
    f = r["sources"]["authors"]["files"][0]
    check_recipe(r, "toy")
    for bad, msg in (({"url": "https://x/y"}, "exactly one of url: or resolve:"),
                     ({"resolve": None}, "exactly one of url: or resolve:"),
                     ({"resolve": {"zenodo": 1, "geo": "GSE1"}}, "exactly one of zenodo, figshare, geo"),
                     ({"resolve": {"zenodo": 1, "pattern": "("}}, "resolve: "),
                     ({"resolve": {"zenodo": 1, "count": 0}}, "count must be a positive integer"),
                     ({"resolve": {"zenodo": 1, "patern": "x"}}, "unknown key")):
        g = dict(f, **bad)
        r["sources"]["authors"]["files"] = [g]
        with pytest.raises(ConfigError, match=msg):
            check_recipe(r, "toy")


def test_packaged_recipes_resolve_by_pattern_not_guessed_urls():
    """The authors' archives of the five Zenodo datasets are found by pattern: each pattern takes its own
    id or SpatialBenchmarking folder and no other dataset's; no recipe file is a guessed URL any more."""
    folders = {"MOB": 44, "HP": 28, "HO": 7, "ML": 45, "MK": 34}
    import re

    for rid in list_recipes():
        recipe = get_recipe(rid)
        for src in recipe["sources"].values():
            for f in src["files"]:
                assert f.get("url_status") in (None, "verified"), (rid, f["name"])
                assert bool(f.get("url")) != bool(f.get("resolve"))
                if f.get("url"):
                    assert "zenodo.org" not in f["url"] and "ncbi" not in f["url"] and "figshare" not in f["url"]
        if rid not in folders:
            continue
        (f,) = recipe["sources"]["authors"]["files"]
        pat = f["resolve"]["pattern"]
        assert f["resolve"]["zenodo"] == RECORD and f["resolve"]["count"] == 1
        assert re.fullmatch(pat, f"{rid}.zip") and re.fullmatch(pat, f"Dataset{folders[rid]}.tar.gz")
        assert re.fullmatch(pat, f"stMCDI_{rid}_data.zip")
        for other, n in folders.items():
            if other != rid:
                assert not re.fullmatch(pat, f"{other}.zip") and not re.fullmatch(pat, f"Dataset{n}.zip"), (rid, other)
        assert not re.fullmatch(pat, f"{rid}.h5ad") and not re.fullmatch(pat, f"Dataset{folders[rid]}0.zip")


def test_offline_rerun_checks_cached_copy_against_lock(sources, tmp_path, monkeypatch):
    """Listing unreachable on a rerun: the earlier verified download is checked against its recorded sha256."""
    sources.zen("TOY.zip", toy_zip())
    fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)
    monkeypatch.setenv("STBENCH_ZENODO_API", "http://127.0.0.1:9/api")
    man = json.loads(fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0).read_text())
    assert man["files"][0]["checksum"] == "locked" and "unreachable" in man["files"][0]["not_verified_against_source"]
    assert man["files"][0]["verified_by"] == ["sha256 (lock)"]
    (tmp_path / "TOY/authors/files/TOY.zip").write_bytes(b"corrupt")
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        fetch("TOY", "authors", tmp_path, recipe=toy_recipe(), retries=0)
