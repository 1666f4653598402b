"""stbench.data.datasets.fetch against a local HTTP server: verified, corrupted and truncated downloads."""

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

from stbench.data.datasets import fetch
from stbench.data.datasets.download import LOCK_NAME, download_file, read_lock
from stbench.errors import ConfigError, DatasetError

COUNTS = b"Gad1\tSst\tVip\n1\t2\t3\n4\t5\t6\n7\t8\t9\n"
LOCS = b"x\ty\n0\t0\n1\t0\n0\t1\n"


def sb_files(n_spots=25, n_genes=12):
    """Insitu_count.txt / Locations.txt bytes of a contract-sized toy dataset."""
    rows = ["\t".join(f"G{j}" for j in range(n_genes))]
    rows += ["\t".join(str((i * 7 + j * 3) % 5 + (j == 0)) for j in range(n_genes)) for i in range(n_spots)]
    locs = ["x\ty"] + [f"{i % 5}\t{i // 5}" for i in range(n_spots)]
    return ("\n".join(rows) + "\n").encode(), ("\n".join(locs) + "\n").encode()


class Server:
    """Serves ``files`` (path -> bytes); paths in ``truncate`` announce more bytes than they send."""

    def __init__(self):
        self.files, self.truncate, self.hits = {}, set(), []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]
                srv.hits.append(path)
                if path not in srv.files:
                    self.send_error(404)
                    return
                body = srv.files[path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (100 if path in srv.truncate else 0)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def recipe(url, files):
    return {
        "id": "TOY", "title": "toy", "tissue": "t", "species": "s", "platform": "p", "citation": "c",
        "paper": {"table4": {"geo": "GSE0", "spots": 4}}, "default_source": "authors",
        "sources": {"authors": {
            "accession": "toy", "expect": {"spots": [3, 4], "genes": [3, 3]},
            "files": [{"url": f"{url}/{f['name']}", "role": "spatial", **f} for f in files],
            "spatial": {"format": "spatialbenchmarking", "counts": "Insitu_count.txt", "locations": "Locations.txt"},
        }},
    }


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")) or ".tmp" in p.name)


def test_good_download_records_lock_and_is_reused(server, tmp_path):
    server.files.update({"/Insitu_count.txt": COUNTS, "/Locations.txt": LOCS})
    r = recipe(server.url, [{"name": "Insitu_count.txt", "sha256": None},
                            {"name": "Locations.txt", "sha256": sha(LOCS)}])
    mpath = fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    assert mpath == tmp_path / "TOY" / "authors" / "manifest.json"
    man = json.loads(mpath.read_text())
    by = {f["name"]: f for f in man["files"]}
    assert by["Insitu_count.txt"]["sha256"] == sha(COUNTS) and by["Insitu_count.txt"]["checksum"] == "recorded now"
    assert by["Locations.txt"]["checksum"] == "pinned"
    lock = read_lock(tmp_path)
    assert lock[f"{server.url}/Insitu_count.txt"]["sha256"] == sha(COUNTS)
    assert f"{server.url}/Locations.txt" not in lock  # pinned in the recipe, nothing to record
    assert yaml.safe_load((tmp_path / LOCK_NAME).read_text())["version"] == 1
    # second fetch: files are re-used (verified against lock/pin), no new request
    n = len(server.hits)
    fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    assert len(server.hits) == n
    assert json.loads(mpath.read_text())["files"][0]["checksum"] == "locked"
    assert leftovers(tmp_path) == []


def test_corrupted_download_names_file_and_both_hashes(server, tmp_path):
    server.files["/Insitu_count.txt"] = COUNTS.replace(b"5", b"6")
    expected = sha(COUNTS)
    with pytest.raises(DatasetError) as e:
        download_file(f"{server.url}/Insitu_count.txt", tmp_path / "Insitu_count.txt", sha256=expected, retries=1, backoff=0)
    msg = str(e.value)
    assert "Insitu_count.txt" in msg and expected in msg and sha(server.files["/Insitu_count.txt"]) in msg
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    assert server.hits.count("/Insitu_count.txt") == 2  # retried once


def test_upstream_change_detected_by_lock(server, tmp_path):
    server.files.update({"/Insitu_count.txt": COUNTS, "/Locations.txt": LOCS})
    r = recipe(server.url, [{"name": "Insitu_count.txt"}, {"name": "Locations.txt"}])
    fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    files = tmp_path / "TOY" / "authors" / "files"
    (files / "Insitu_count.txt").unlink()
    server.files["/Insitu_count.txt"] = COUNTS + b"1\t1\t1\n"  # upstream re-upload
    new = sha(server.files["/Insitu_count.txt"])
    with pytest.raises(DatasetError, match=rf"Insitu_count\.txt.*expected {sha(COUNTS)}, got {new}"):
        fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    assert not (files / "Insitu_count.txt").exists() and leftovers(tmp_path) == []
    # --refresh forgets the recorded hash and accepts the new file
    man = json.loads(fetch("TOY", "authors", tmp_path, recipe=r, retries=0, refresh=True).read_text())
    assert man["files"][0]["sha256"] == sha(server.files["/Insitu_count.txt"])


def test_truncated_download_fails_and_leaves_nothing(server, tmp_path):
    server.files["/Insitu_count.txt"] = COUNTS * 50
    server.truncate.add("/Insitu_count.txt")
    with pytest.raises(DatasetError, match=r"Insitu_count\.txt.*download failed after 2 attempt"):
        download_file(f"{server.url}/Insitu_count.txt", tmp_path / "Insitu_count.txt", retries=1, backoff=0)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_git_blob_check(server, tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.txt.*404"):
        download_file(f"{server.url}/nope.txt", tmp_path / "nope.txt", retries=0)
    server.files["/Locations.txt"] = LOCS
    blob = hashlib.sha1(f"blob {len(LOCS)}\0".encode() + LOCS).hexdigest()
    download_file(f"{server.url}/Locations.txt", tmp_path / "Locations.txt", git_blob=blob, retries=0)
    (tmp_path / "Locations.txt").unlink()
    with pytest.raises(DatasetError, match=rf"git blob sha1 mismatch: expected {'0' * 40}, got {blob}"):
        download_file(f"{server.url}/Locations.txt", tmp_path / "Locations.txt", git_blob="0" * 40, retries=0)
    assert list(tmp_path.iterdir()) == []


def test_zip_archive_is_unpacked_and_loaded(server, tmp_path):
    from stbench.data.contract import validate_dataset
    from stbench.data.datasets import load_recipe

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        c, loc = sb_files()
        zf.writestr("TOY/Insitu_count.txt", c)
        zf.writestr("TOY/Locations.txt", loc)
    server.files["/TOY.zip"] = buf.getvalue()
    r = recipe(server.url, [{"name": "TOY.zip", "unpack": True}])
    r["sources"]["authors"]["spatial"] = {"format": "spatialbenchmarking", "counts": "TOY/**/Insitu_count.txt",
                                          "locations": "TOY/**/Location*.txt"}
    r["sources"]["authors"]["reference"] = {"format": "scrna", "path": "TOY/**/scRNA_count.txt", "optional": True}
    r["sources"]["authors"]["expect"]["genes"] = [12, 12]
    man = json.loads(fetch("TOY", "authors", tmp_path, recipe=r, retries=0).read_text())
    assert man["files"][0]["unpacked"] == "files/TOY"
    with pytest.warns(UserWarning, match=r"TOY \(authors\): 25 spots, expected 3-4"):
        adata, ref = load_recipe("TOY", "authors", tmp_path)
    assert ref is None and adata.shape == (25, 12)
    rep = adata.uns["prepare_report"]
    assert rep["reference"].startswith("absent")
    assert rep["warnings"] == ["TOY (authors): 25 spots, expected 3-4 (the recipe: paper Table 4, size: or the SpatialBenchmarking folder)"]
    validate_dataset(adata, "toy")


def test_unknown_source_and_source_without_spatial(tmp_path):
    with pytest.raises(ConfigError, match="sources: authors, geo"):
        fetch("HBC", "nope", tmp_path)
    with pytest.raises(ConfigError, match="no established spatial data"):
        fetch("MOB", "geo", tmp_path)


def test_reference_from_another_source_downloads_only_its_reference_files(server, tmp_path):
    """A dataset's reference from the `geo` source: only that source's reference files are fetched
    (manifest_reference.json), read as genes x cells with cell-type labels; unlabelled cells dropped."""
    from stbench.data.datasets import load_recipe

    c, loc = sb_files()
    genes = [f"G{j}" for j in range(12)]
    cells = [f"c{i}" for i in range(10)]
    ref_csv = "," + ",".join(cells) + "\n" + "".join(f"{g}," + ",".join(str((i + j) % 4) for i in range(10)) + "\n"
                                                for j, g in enumerate(genes[:8]))
    labels = "cell,cell_ontology_class\n" + "".join(f"c{i},{'hepatocyte' if i % 2 else 'endothelial cell'}\n"
                                                     for i in range(9))  # c9 failed QC: not listed
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("FACS/Liver-counts.csv", ref_csv)
    server.files.update({"/Insitu_count.txt": c, "/Locations.txt": loc, "/FACS.zip": buf.getvalue(),
                         "/annotations.csv": labels.encode()})
    r = recipe(server.url, [{"name": "Insitu_count.txt"}, {"name": "Locations.txt"}])
    r["sources"]["authors"]["expect"]["genes"] = [12, 12]
    r["sources"]["geo"] = {
        "accession": "toy geo", "expect": {"spots": [3, 4], "genes": [3, 3]}, "spatial": None,
        "files": [{"name": "FACS.zip", "url": f"{server.url}/FACS.zip", "role": "reference", "unpack": True},
                  {"name": "annotations.csv", "url": f"{server.url}/annotations.csv", "role": "reference"},
                  {"name": "spatial.tar.gz", "url": f"{server.url}/never.tar.gz", "role": "spatial"}],
        "reference": {"format": "scrna", "path": "FACS/**/Liver-counts.csv", "orientation": "genes_x_cells",
                      "labels": "annotations.csv", "labels_cell_column": "cell", "labels_column": "cell_ontology_class"}}
    r["reference_source"] = "geo"
    fetch("TOY", "authors", tmp_path, recipe=r, retries=0)
    with pytest.raises(DatasetError, match=r"manifest_reference\.json: no download manifest.*--reference-only"), \
            pytest.warns(UserWarning):
        load_recipe("TOY", "authors", tmp_path)
    mpath = fetch("TOY", "geo", tmp_path, recipe=r, retries=0, reference_only=True)
    assert mpath.name == "manifest_reference.json" and "/never.tar.gz" not in server.hits
    assert [f["name"] for f in json.loads(mpath.read_text())["files"]] == ["FACS.zip", "annotations.csv"]
    with pytest.warns(UserWarning):
        adata, ref = load_recipe("TOY", "authors", tmp_path)
    assert ref.shape == (9, 8) and list(ref.obs_names) == cells[:9]
    assert ref.obs["cell_type"].tolist() == ["hepatocyte" if i % 2 else "endothelial cell" for i in range(9)]
    assert ref.uns["unlabelled_cells_dropped"] == 1
    np.testing.assert_array_equal(ref.X.toarray()[:, 0], [i % 4 for i in range(9)])
    rep = adata.uns["prepare_report"]
    assert rep["reference_source"] == "geo" and rep["reference_gene_overlap"] == 8
    with pytest.warns(UserWarning):
        _, none = load_recipe("TOY", "authors", tmp_path, reference_source="none")
    assert none is None
    with pytest.raises(ConfigError, match="reference_source 'nope' is not one of its sources"):
        load_recipe("TOY", "authors", tmp_path, reference_source="nope")
    with pytest.raises(ConfigError, match="source 'authors' has no reference files"):
        fetch("TOY", "authors", tmp_path, recipe=r, reference_only=True)


def test_paper_datasets_need_their_reference_download(tmp_path):
    """Every stMCDI recipe takes its reference from `geo` by default, so a paper run downloads it (SpaDiT's
    recipes carry their reference in the same Zenodo record: tests/test_spadit_datasets.py)."""
    from stbench.data.datasets import list_recipes
    from stbench.data.dataset_blocks import dataset_inputs

    for rid in [r for r in list_recipes() if not r.startswith("SpaDiT_")]:
        files = dataset_inputs({"recipe": rid, "source": "authors"}, str(tmp_path))
        assert files == [str(tmp_path / rid / "authors" / "manifest.json"),
                         str(tmp_path / rid / "geo" / "manifest_reference.json")], rid
        assert dataset_inputs({"recipe": rid, "source": "authors", "reference_source": "none"}, str(tmp_path)) == files[:1]
    with pytest.raises(ConfigError, match="dataset 'x': recipe 'MOB': reference_source 'zenodo'"):
        from stbench.data.dataset_blocks import check_spec

        check_spec("x", {"recipe": "MOB", "reference_source": "zenodo"})


def test_published_size_is_checked_when_no_hash_is(server, tmp_path):
    """Where only a file's size is published (GSE121891's files), a different size fails the download."""
    server.files["/Locations.txt"] = LOCS
    with pytest.raises(DatasetError, match=rf"Locations\.txt.*size mismatch: expected {len(LOCS) + 1} bytes, got {len(LOCS)} bytes"):
        download_file(f"{server.url}/Locations.txt", tmp_path / "Locations.txt", size=len(LOCS) + 1, retries=0)
    assert list(tmp_path.iterdir()) == []
    assert download_file(f"{server.url}/Locations.txt", tmp_path / "Locations.txt", size=len(LOCS), retries=0)[1] == len(LOCS)
