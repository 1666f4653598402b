"""The HTML report, the cost table, the spatial maps' gene rule and the mask-ratio figure (small synthetic inputs)."""

import re

import numpy as np
import pandas as pd
import pytest

from tests.report_fixture import build_small_report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    return build_small_report(tmp)


def test_report_is_one_self_contained_page_with_every_section(report):
    page = report.read_text()
    # nothing is fetched: no external script, stylesheet or image; every image is an embedded PNG; the only
    # relative links are <a> links to the run's own job logs (opened when clicked, never fetched)
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#|https?://|logs/impute/)', page)
    assert all(m.startswith('<a href="logs/impute/') for m in re.findall(r'<a href="logs/[^"]*"', page))
    assert not re.search(r'<(script|link)\b', page) and not re.search(r'src="https?://', page)
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 4  # the heatmap, Figure 3, the mask-ratio figure, the spatial map
    import base64
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    for anchor in ("protocol", "table1", "ablations", "figures", "spatial", "cost", "problems", "datasets"):
        assert f'id="{anchor}"' in page
    assert "random mask, ratio 0.1, among all; random mask, ratio 0.3, among all" in page  # the protocol block
    assert "genes: the 3 with the most held-out entries" in page  # the spatial maps' stated rule
    assert "Mouse olfactory bulb" in page and "Dataset card" in page  # MOB's recipe and card
    assert "Boom &lt;b&gt;" in page and "Boom <b>" not in page  # labels are escaped


def test_report_lists_failed_and_suspect_runs_with_their_reasons(report):
    page = report.read_text()
    table = page.split('id="problemtable"')[1].split("</table>")[0]
    assert table.count("badge failed") == 8 and table.count("badge suspect") == 8  # 2 datasets x 2 masks x 2 seeds
    assert "RuntimeError: deliberate &lt;failure&gt; &amp; more" in table  # escaped, not markup
    assert "logs/impute/MOB_random-0.1-all_seed0_boom_default.log" in table


def test_paper_comparison_flags_large_differences():
    from stbench.report import flag

    assert flag(0.049, 0.0) == [] and flag(0.051, 0.0) == ["|diff| > 0.05"]
    assert flag(0.03, 0.01) == ["|diff| > 2 std"] and flag(0.019, 0.01) == []
    assert flag(-0.2, 0.01) == ["|diff| > 0.05", "|diff| > 2 std"] and flag(np.nan, 0.1) == []


def test_paper_comparison_cells(report):
    from stbench.report import paper_comparison

    cmp_ = paper_comparison(report.parent / "tables" / "table1_vs_paper.csv")
    rows = {(r["block"], r["label"]): r["cells"] for r in cmp_["rows"]}
    assert set(b for b, _ in rows) == {"random-0.1-all", "random-0.3-all"}
    knn = rows[("random-0.1-all", "KNN")][0]  # MOB PCC: ours 0.255 (mean of 0.25, 0.26) vs the paper's -0.063
    assert knn["paper"] == "-0.063±0.001" and knn["diff"] == "+0.318" and "0.05" in knn["flag"]
    mean = rows[("random-0.1-all", "Mean")][0]  # -0.050 vs -0.005 (±0 printed): within 0.05, no std rule
    assert mean["diff"] == "-0.045" and mean["flag"] == ""
    boom = rows[("random-0.1-all", "Boom <b>")][0]
    assert boom["ours"] == "--" and boom["status"] == "failed" and boom["diff"] == ""
    page = report.read_text()
    assert "flagged (red)" in page and 'class="flag"' in page


def test_cost_table_means_over_seeds(report):
    from stbench.cost_table import cost_table

    cost = pd.read_csv(report.parent / "tables" / "cost.csv")
    st = cost[(cost["dataset"] == "MOB") & (cost["method"] == "stmcdi") & (cost["variant"] == "default")].iloc[0]
    assert st["n_runs"] == 4 and st["wall_time_s"] == 10.5 and st["peak_gpu_mb"] == 512 and st["device"] == "NVIDIA H100"
    knn = cost[(cost["dataset"] == "sim") & (cost["method"] == "knn")].iloc[0]
    assert np.isnan(knn["peak_gpu_mb"]) and knn["device"] == "cpu" and knn["label"] == "KNN"
    boom = cost[cost["method"] == "boom"].iloc[0]
    assert boom["n_ok"] == 0 and boom["n_runs"] == 4
    md = (report.parent / "tables" / "cost.md").read_text()
    assert "| MOB | stMCDI | 4 (4) | 10.5 | 200 | 512 | NVIDIA H100 |" in md and "| sim | KNN | 4 (4) | 10.5 | 200 | - | cpu |" in md
    assert list(cost_table([]).columns)[:3] == ["dataset", "method", "variant"]
    page = report.read_text()
    assert 'id="costtable"' in page and "NVIDIA H100" in page


def test_spatial_genes_rule():
    from stbench.report_figures import spatial_genes

    truth = np.zeros((10, 5))
    truth[:, 3] = np.arange(10)  # the larger variance wins a tie
    held = np.zeros((10, 5), dtype=bool)
    held[:4, 0] = True
    held[:2, [1, 3, 4]] = True
    assert list(spatial_genes(truth, held, 3)) == [0, 3, 1]
    assert list(spatial_genes(truth, np.zeros_like(held), 3)) == []  # nothing held out: nothing to show


def test_mask_ratio_figure_needs_two_ratios(tmp_path, report):
    from stbench.report_figures import mask_ratio_figure

    long = pd.read_csv(report.parent / "tables" / "table1_long.csv")
    assert (report.parent / "figures" / "mask_ratio.png").read_bytes()[:4] == b"\x89PNG"
    one = long[long["ratio"] == 0.1]
    one.to_csv(tmp_path / "one.csv", index=False)
    assert mask_ratio_figure(tmp_path / "one.csv", tmp_path / "x.png") is False and not (tmp_path / "x.png").exists()


def test_dataset_card_markdown():
    from stbench.report import markdown_to_html

    html = markdown_to_html("# T\n\n**Bold** `code` <x> [l](https://a.b/c)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n  more\n- two\n")
    assert "<h3>T</h3>" in html and "<strong>Bold</strong> <code>code</code> &lt;x&gt;" in html
    assert '<a href="https://a.b/c">l</a>' in html and "<td>1</td><td>2</td>" in html
    assert "<li>one more</li><li>two</li>" in html
