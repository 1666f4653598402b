"""SpaDiT's ten dataset recipes (stbench/data/datasets/recipes/SpaDiT_*.yaml) resolve against a local Zenodo-shaped
listing of record 12792074: each pattern picks exactly its own archive among names shaped like the release's
(``dataset40_MC``, ``dataset45_ML``, ...) and stops, printing the listing, when its archive is missing. No network."""

import json

import pytest

from stbench.data.datasets import get_recipe, list_recipes
from stbench.data.datasets import listings
from stbench.data.datasets.recipes import check_recipe
from tests.test_datasets_download import Server

IDS = ["MG", "MH", "MHPR", "MVC", "MHM", "HBC", "ME", "MPMC", "MC", "ML"]
RECORD = 12792074
# plausible names for the record's archives (the release's own folder names are dataset_<ID> / datasetNN_<ID>)
NAMES = {"MG": "dataset_MG.zip", "MH": "MH.zip", "MHPR": "dataset_MHPR.tar.gz", "MVC": "dataset12_MVC.zip",
         "MHM": "MHM.tgz", "HBC": "dataset_HBC.zip", "ME": "dataset_ME.zip", "MPMC": "MPMC.zip",
         "MC": "dataset40_MC.zip", "ML": "dataset45_ML.zip"}


@pytest.fixture
def zenodo(monkeypatch):
    s = Server()
    monkeypatch.setenv("STBENCH_ZENODO_API", f"{s.url}/api")

    def publish(names):
        entries = [{"key": n, "checksum": "md5:" + "0" * 32, "size": 10,
                    "links": {"self": f"{s.url}/api/records/{RECORD}/files/{n}/content"}} for n in names]
        s.files[f"/api/records/{RECORD}"] = json.dumps({"id": RECORD, "files": entries}).encode()
    yield publish
    s.httpd.shutdown()


def _resolve(ident):
    r = get_recipe(f"SpaDiT_{ident}")
    f = r["sources"]["authors"]["files"][0]
    return listings.resolve(f["resolve"], f["name"])


def test_ten_recipes_exist_and_are_well_formed():
    assert {f"SpaDiT_{i}" for i in IDS} <= set(list_recipes())
    for i in IDS:
        r = get_recipe(f"SpaDiT_{i}")
        check_recipe(r, i)
        assert r["paper"]["spadit_table1"] == i
        assert r["sources"]["authors"]["files"][0]["resolve"]["zenodo"] == RECORD


def test_each_pattern_picks_its_own_archive(zenodo):
    zenodo(list(NAMES.values()) + ["README.md", "SpaDiT_code.zip"])
    for i in IDS:
        hits = _resolve(i)
        assert [h.name for h in hits] == [NAMES[i]], i
        assert hits[0].md5 == "0" * 32 and hits[0].size == 10


def test_a_missing_archive_stops_and_prints_the_listing(zenodo):
    zenodo([n for k, n in NAMES.items() if k != "MH"])
    with pytest.raises(listings.Unresolved, match="0 matched.*MHM.tgz"):
        _resolve("MH")      # MHM and MHPR must not stand in for MH


def test_two_candidates_are_an_error(zenodo):
    zenodo(list(NAMES.values()) + ["ML_v2.zip"])
    with pytest.raises(listings.Unresolved, match="2 matched"):
        _resolve("ML")


def _zip(files: dict) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_spadit_archive_downloads_and_prepares_end_to_end(monkeypatch, tmp_path):
    """A SpaDiT recipe (no Table 4 row of its own) downloads from a Zenodo-shaped listing with its md5, unpacks,
    loads the spatial matrix and its paired reference, and checks the shape against the recipe's size: (a miss
    warns, naming both)."""
    import hashlib

    from stbench.data.datasets import fetch, load_recipe
    from tests.test_datasets_download import sb_files

    counts, locs = sb_files(n_spots=30, n_genes=12)
    genes = [f"G{j}" for j in range(12)]
    sc = "\t".join(["gene"] + [f"c{i}" for i in range(20)]) + "\n" + "".join(
        "\t".join([g] + [str((i + j) % 4) for i in range(20)]) + "\n" for j, g in enumerate(genes))
    archive = _zip({"MG/Spatial_count.txt": counts, "MG/Locations.txt": locs, "MG/scRNA_count.txt": sc.encode()})
    s = Server()
    try:
        monkeypatch.setenv("STBENCH_ZENODO_API", f"{s.url}/api")
        name = "dataset1_MG.zip"
        s.files[f"/files/{name}"] = archive
        s.files[f"/api/records/{RECORD}"] = json.dumps({"id": RECORD, "files": [
            {"key": name, "checksum": "md5:" + hashlib.md5(archive).hexdigest(), "size": len(archive),
             "links": {"self": f"{s.url}/files/{name}"}}]}).encode()
        fetch("SpaDiT_MG", "authors", tmp_path, retries=0)
        with pytest.warns(UserWarning, match=r"SpaDiT_MG \(authors\): 30 spots, expected 8425-8425"):
            adata, ref = load_recipe("SpaDiT_MG", "authors", tmp_path)
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()
    assert adata.shape == (30, 12) and ref is not None and ref.n_obs == 20
    rep = adata.uns["prepare_report"]
    assert rep["expected_spots"] == [8425, 8425] and rep["table4_spots"] is None
    assert adata.uns["source"]["accession"].startswith("Zenodo 12792074")
