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
    assert len(imgs) == 5  # the summary, the heatmap, Figure 3, the mask-ratio figure, the spatial map
    import base64
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    for anchor in ("protocol", "provenance", "summary", "table1", "ablations", "figures", "spatial", "cost", "problems",
                   "datasets"):
        assert f'id="{anchor}"' in page
    # the protocol block: each mask by its MaskSpec.id; the genes kept as the preprocess step's qc.json says
    assert ("random-0.1-all (random mask, ratio 0.1, among all); random-0.3-all (random mask, ratio 0.3, among all)"
            in page)
    assert "12 of 20 genes kept (by CV (paper App. E), asked for up to 1000; qc.json)" in page and "top 1000" not in page
    assert "the 4 with the largest Moran&#39;s I of the truth" in page  # the spatial maps' stated rule
    assert "Mouse olfactory bulb" in page and "Dataset card" in page  # MOB's recipe and card
    assert "Boom &lt;b&gt;" in page and "Boom <b>" not in page  # labels are escaped


def test_report_lists_failed_and_suspect_runs_with_their_reasons(report):
    page = report.read_text()
    table = page.split('id="problemtable"')[1].split("</table>")[0]
    # 2 datasets x 2 masks x 2 seeds, and the one-seed dataset's one run
    assert table.count("badge failed") == 9 and table.count("badge suspect") == 9
    assert "RuntimeError: deliberate &lt;failure&gt; &amp; more" in table  # escaped, not markup
    assert "logs/impute/MOB_random-0.1-all_seed0_boom_default.log" in table


def test_paper_comparison_flags_large_differences():
    from stbench.results.report import flag

    assert flag(0.049, 0.0) == [] and flag(0.051, 0.0) == ["|diff| > 0.05"]
    assert flag(0.03, 0.01) == ["|diff| > 2 std"] and flag(0.019, 0.01) == []
    assert flag(-0.2, 0.01) == ["|diff| > 0.05", "|diff| > 2 std"] and flag(np.nan, 0.1) == []


def test_paper_comparison_cells(report):
    from stbench.results.report import paper_comparison

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
    from stbench.results.cost_table import cost_table

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
    from stbench.results.report_figures import spatial_genes

    # without coordinates: more held-out entries first, ties by the larger variance
    truth = np.zeros((10, 5))
    truth[:, 3] = np.arange(10)
    held = np.zeros((10, 5), dtype=bool)
    held[:4, 0] = True
    held[:2, [1, 3, 4]] = True
    assert list(spatial_genes(truth, held, 3)) == [0, 3, 1]
    assert list(spatial_genes(truth, np.zeros_like(held), 3)) == []  # nothing held out: nothing to show
    # with coordinates: the spatially patterned genes (Moran's I) win over noise of larger variance
    rng = np.random.default_rng(0)
    coords = np.array([(i, j) for i in range(12) for j in range(12)], dtype=float)
    truth = rng.normal(0, 3, size=(144, 6))
    truth[:, 2] = coords[:, 0]  # a gradient
    truth[:, 4] = (coords[:, 1] > 6) * 2.0  # two domains
    held = rng.random((144, 6)) < 0.2
    held[:, 5] = False
    held[:3, 5] = True  # under 5% of spots held out: not eligible, however patterned
    truth[:, 5] = coords[:, 1]
    assert sorted(spatial_genes(truth, held, 2, coords)) == [2, 4]
    assert 5 not in spatial_genes(truth, held, 5, coords)


def test_spatial_maps_grid(tmp_path):
    from stbench.results.report_figures import spatial_maps

    rng = np.random.default_rng(1)
    coords = np.array([(i, j) for i in range(10) for j in range(10)], dtype=float)
    truth = rng.gamma(2.0, 1.0, size=(100, 8))
    held = rng.random((100, 8)) < 0.3
    panels = {f"M{i}": truth + rng.normal(0, 0.3, truth.shape) for i in range(5)}
    genes = spatial_maps(coords, truth, held, panels, [f"G{i}" for i in range(8)], tmp_path / "s.png")
    assert len(genes) == 4
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp_path / "s.png")
    # a grid: 7 rows (truth twice, 5 methods) x 4 genes, taller than wide, each panel about 200 px
    assert img.shape[0] > img.shape[1] > 700


def test_mask_ratio_figure_needs_two_ratios(tmp_path, report):
    from stbench.results.report_figures import mask_ratio_figure

    long = pd.read_csv(report.parent / "tables" / "table1_long.csv")
    assert (report.parent / "figures" / "mask_ratio.png").read_bytes()[:4] == b"\x89PNG"
    one = long[long["ratio"] == 0.1]
    one.to_csv(tmp_path / "one.csv", index=False)
    assert mask_ratio_figure(tmp_path / "one.csv", tmp_path / "x.png") is False and not (tmp_path / "x.png").exists()


def test_dataset_card_markdown():
    from stbench.results.report import markdown_to_html

    html = markdown_to_html("# T\n\n**Bold** `code` <x> [l](https://a.b/c)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n  more\n- two\n")
    assert "<h3>T</h3>" in html and "<strong>Bold</strong> <code>code</code> &lt;x&gt;" in html
    assert '<a href="https://a.b/c">l</a>' in html and "<td>1</td><td>2</td>" in html
    assert "<li>one more</li><li>two</li>" in html


def test_report_numbers_say_how_many_seeds(report):
    page = report.read_text()
    t1 = page.split('id="t1"')[1].split("</table>")[0]
    cells = re.findall(r'<td[^>]*title="ok \(n = 1 seed\)"[^>]*>([^<]*)<sub class="n">n=1</sub>', t1)
    assert cells and all("±" not in c for c in cells)  # one seed: the mean alone, no ±0.000
    assert '<sub class="n">n=2</sub>' in t1 and "±" in t1
    # the failed and suspect rows: one spanning cell per dataset, not one per metric
    boom = t1.split("Boom &lt;b&gt;</td>")[1].split("</tr>")[0]
    assert boom.count("<td") == 3 and 'colspan="5"' in boom and "failed" in boom


def test_summary_ranks_methods_across_datasets_and_metrics(report):
    summ = pd.read_csv(report.parent / "tables" / "summary.csv")
    assert list(summ["label"][:3]) == ["stMCDI", "KNN", "Mean"]  # by mean rank
    st = summ.set_index("label")
    assert st.loc["stMCDI", "mean_rank"] == 1.0 and st.loc["KNN", "mean_rank"] == 2.0
    # failed and suspect rows have no usable result: last place in every ranking, counted
    assert st.loc["Boom <b>", "mean_rank"] == 5 and st.loc["Boom <b>", "n_no_result"] == st.loc["Boom <b>", "n_rankings"]
    ranks = pd.read_csv(report.parent / "tables" / "summary_ranks.csv")
    rmse = ranks[(ranks["metric"] == "rmse") & (ranks["dataset"] == "sim") & (ranks["ratio"] == 0.1)].set_index("label")
    assert rmse.loc["stMCDI", "rank"] == 1 and rmse.loc["Mean", "rank"] == 3  # lower RMSE is better
    page = report.read_text()
    assert 'id="summarytable"' in page and "summary.png" in page


def test_ranks_skip_skipped_rows_and_unknown_metrics():
    from stbench.results.tables import rank_summary, ranks

    rows = []
    for lab, v, st in (("A", 0.9, "ok"), ("B", 0.5, "ok"), ("C", np.nan, "skipped: no reference")):
        for metric in ("pcc", "mystery_metric"):
            rows.append({"dataset": "d", "mask": "random-0.1-all", "mask_strategy": "random", "ratio": 0.1, "among": "all", "table": "table1",
                         "metric": metric, "label": lab, "mean": v, "status": st})
    r = ranks(pd.DataFrame(rows))
    assert set(r["metric"]) == {"pcc"} and set(r["label"]) == {"A", "B"}  # no direction known: not ranked
    s = rank_summary(r).set_index("label")
    assert s.loc["A", "mean_rank"] == 1 and s.loc["B", "mean_rank"] == 2


def test_cost_totals_per_method_and_for_the_run(report):
    tot = pd.read_csv(report.parent / "tables" / "cost_totals.csv").set_index("label")
    from stbench.results.cost_table import RUN_TOTAL

    # stMCDI: MOB and sim 2 ratios x seeds 0, 1 (wall 10, 11), solo one run (wall 10)
    assert tot.loc["stMCDI", "n_runs"] == 9 and tot.loc["stMCDI", "total_wall_time_s"] == 4 * 21 + 10
    assert tot.loc[RUN_TOTAL, "n_runs"] == 63 and tot.loc[RUN_TOTAL, "total_wall_time_s"] == 7 * 94
    assert tot.loc[RUN_TOTAL, "max_peak_gpu_mb"] == 512
    assert "Totals per method and for the run" in (report.parent / "tables" / "cost.md").read_text()
    page = report.read_text()
    assert 'id="costtotals"' in page and 'class="total"' in page


def test_provenance_names_the_commit_and_the_config_hash(report):
    import json
    import subprocess

    from stbench.results.provenance import config_hash
    from tests.report_fixture import CONFIG, ROOT

    rec = json.loads((report.parent / "tables" / "provenance.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert rec["git"]["commit"] == head.stdout.strip() and isinstance(rec["git"]["dirty"], bool)
    assert rec["config"]["resolved_sha256"] == config_hash(CONFIG)
    assert config_hash({"seeds": [0, 1], "run": "small"}) == config_hash(CONFIG)  # key order does not matter
    assert config_hash({**CONFIG, "seeds": [0]}) != config_hash(CONFIG)
    import hashlib
    cfg_file = report.parent / "config.yaml"
    assert rec["config"]["files"][0]["sha256"] == hashlib.sha256(cfg_file.read_bytes()).hexdigest()
    for k in ("python", "torch", "scanpy", "scvi-tools", "tangram-sc", "snakemake", "torch CUDA build"):
        assert k in rec["packages"]
    assert rec["hardware"]["logical_cores"] >= 1 and rec["hardware"]["cpu"]
    assert rec["run_devices"] == {"NVIDIA H100": 27, "cpu": 36} and rec["command_line"].startswith("snakemake")
    page = report.read_text()
    prov = page.split('id="provenance"')[1].split("</section>")[0]
    assert rec["config"]["resolved_sha256"] in prov and (rec["git"]["commit"] or "unknown") in prov


def test_provenance_outside_git(tmp_path):
    from stbench.results.provenance import git_info

    info = git_info(tmp_path)
    assert info["commit"] is None and info["dirty"] is None and "not a git checkout" in info["note"]


def test_invocation_skips_the_job_process_and_its_shell(monkeypatch):
    """A local snakemake job runs as `sh -c '... snakemake --target-jobs ...'` under the user's snakemake: the
    recorded command line is the user's."""
    from stbench.results import provenance

    tree = {10: (["/bin/sh", "-c", "python -m snakemake --target-jobs x"], 9),
            9: (["python", "-m", "snakemake", "--cores", "2", "--configfile", "c.yaml"], 1)}
    monkeypatch.setattr(provenance.sys, "argv", ["snakemake", "--target-jobs", "provenance:"])
    monkeypatch.setattr(provenance.os, "getppid", lambda: 10)
    monkeypatch.setattr(provenance, "_cmdline", lambda pid: tree[pid][0])
    monkeypatch.setattr(provenance, "_parent", lambda pid: tree[pid][1])
    assert provenance.invocation() == "python -m snakemake --cores 2 --configfile c.yaml"
    monkeypatch.setattr(provenance.sys, "argv", ["snakemake", "--cores", "1"])
    assert provenance.invocation() == "snakemake --cores 1"  # not a job process: its own command line
    # the provenance rule's script: python .snakemake/scripts/tmp….py under `sh -c`, under the job process
    tree.update({12: (["/bin/sh", "-c", "python .snakemake/scripts/tmpab.provenance.py"], 10)})
    monkeypatch.setattr(provenance.sys, "argv", [".snakemake/scripts/tmpab.provenance.py"])
    monkeypatch.setattr(provenance.os, "getppid", lambda: 12)
    assert provenance.invocation() == "python -m snakemake --cores 2 --configfile c.yaml"
