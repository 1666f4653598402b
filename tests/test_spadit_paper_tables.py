"""The transcribed SpaDiT Tables 2-4 (results/paper-spadit/): shape, the paper's own cross-table identities, and
every cell against the supplementary's text when ../shared is present (skipped otherwise)."""

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "results" / "paper-spadit"
IDS = ["MG", "MH", "MHPR", "MVC", "MHM", "HBC", "ME", "MPMC", "MC", "ML"]
SUPP = ROOT.parent / "shared" / "papers" / "SpaDiT_supplementary.txt"


def _t(name):
    return pd.read_csv(DIR / f"{name}.csv")


def test_shapes_and_rows():
    rows = {"spadit_table2": {"Backbone w/Unet", "Backbone w/Mamba", "SpaDiT (Ours)"},
            "spadit_table3": {"SpaDiT (Ours)", "w/o Flash-Attention", "w/o Condition psi", "w/ Common Gene in psi",
                              "w/o Concat in phi"},
            "spadit_table4": {"w/o Flash-Attention", "PCA", "Attention", "SpaDiT (Ours)"}}
    for name, want in rows.items():
        t = _t(name)
        assert set(t["row"]) == want and set(t["dataset"]) == set(IDS) and (t["metric"] == "as").all()
        assert len(t) == 10 * len(want) and not t.duplicated(["row", "dataset"]).any()
        assert t["value"].between(0, 1).all()


def test_the_papers_own_identities():
    """Table 2's Transformer = Table 3's SpaDiT; Table 3's w/o Flash-Attention = Table 4's MLP (cell by cell)."""
    key = ["dataset", "value", "std"]
    t2, t3, t4 = _t("spadit_table2"), _t("spadit_table3"), _t("spadit_table4")
    pd.testing.assert_frame_equal(*(t[t["row"] == "SpaDiT (Ours)"][key].reset_index(drop=True) for t in (t2, t3)))
    pd.testing.assert_frame_equal(*(t[t["row"] == "w/o Flash-Attention"][key].reset_index(drop=True) for t in (t3, t4)))


@pytest.mark.skipif(not SUPP.exists(), reason="../shared/papers/SpaDiT_supplementary.txt is not present")
def test_every_cell_is_in_the_supplementary_row_as_printed():
    text = SUPP.read_text()
    spans = {"spadit_table2": ("**Table 2.**", "**Table 3.**"), "spadit_table3": ("**Table 3.**", "model using Transformer"),
             "spadit_table4": ("**Table 4.**", "For the Condition Embedding part")}
    for name, (a, b) in spans.items():
        i = text.index(a)
        block = text[i:text.index(b, i)]
        for r in _t(name).itertuples():
            lines = [ln for ln in block.splitlines() if (r.paper_label in ln if name != "spadit_table4" else
                     ln.split("\t")[:4] == [("✓" if c == r.paper_label else "✗") for c in ("MLP", "PCA", "Attention", "Flash-Attention")])]
            cell = f"{r.value:.3f}±{r.std:.3f}"
            assert any(cell in ln for ln in lines), f"{name}: {r.paper_label} {r.dataset} {cell} not in its printed row"
            # and in the right column: the dataset header of the half it is in
            ln = next(ln for ln in lines if cell in ln)
            half = block[:block.index(ln)]
            header = [h for h in half.splitlines() if r.dataset in h.split("\t")][-1].split("\t")
            cells = [re.sub(r"</?b>", "", c).strip() for c in ln.split("\t")]
            assert cells[-5:][header[-5:].index(r.dataset)] == cell, f"{name}: {r.paper_label} {r.dataset}"
