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
