"""A SpaDiT run's report: its ablation tables (supplementary Tables 2-4) and, under `metric_definitions: spadit`,
its Table 1 and Accuracy Score in SpaDiT's definitions, with the definitions named in the protocol box."""

import json

from stbench.results.report import build_report
from stbench.results.tables import write_tables

VARIANTS = [
    {"method": "spadit", "name": "default", "label": "SpaDiT", "table": "table1", "figure": None, "x": None},
    {"method": "spadit", "name": "unet", "label": "w/ U-Net", "table": "spadit_table2", "figure": None, "x": None},
    {"method": "mean", "name": "per_gene", "label": "Mean (per gene)", "table": "table1", "figure": None, "x": None},
]
SCORES = {"default": 0.7, "unet": 0.5, "per_gene": 0.3}


def _runs(root):
    files = []
    for seed in (0, 1):
        for v in VARIANTS:
            d = root / "MG" / "gene-0.1-all" / f"seed{seed}" / v["method"] / v["name"]
            d.mkdir(parents=True)
            s = SCORES[v["name"]] + 0.01 * seed
            metrics = {"pcc": s, "cosine": s, "rmse": 1 - s, "mae": 1 - s, "pcc_spadit": s, "ssim_spadit": s / 2,
                       "rmse_spadit": 1 - s, "js_spadit": 0.5 - s / 2}
            (d / "metrics.json").write_text(json.dumps({
                "dataset": "MG", "method": v["method"], "variant": v["name"], "seed": seed, "status": "ok",
                "error": None, "wall_time_s": 1.0, "mask": {"strategy": "gene", "ratio": 0.1, "among": "all"},
                "metrics": metrics}))
            files.append(d / "metrics.json")
    return files


def test_spadit_ablations_and_metric_definitions_reach_the_report(tmp_path):
    metrics = _runs(tmp_path / "runs")
    protocols = {"MG": {"preprocess": {}, "masks": [{"strategy": "gene", "ratio": 0.1}], "seeds": [0, 1]}}
    write_tables(metrics, VARIANTS, protocols, tmp_path / "tables", tmp_path / "no-paper", metric_definitions="spadit")
    page = build_report(tmp_path / "report.html", run="spadit", protocols=protocols, tables_dir=tmp_path / "tables",
                        metric_files=metrics, metric_definitions="spadit")
    ablations = page.split('id="ablations"')[1].split("</section>")[0]
    assert "SpaDiT supplementary Table 2: network backbone" in ablations and "w/ U-Net" in ablations
    assert "SpaDiT supplementary Table 3" not in ablations  # no variant of the run is reported there
    assert "Metric definitions: spadit" in page.split('id="protocol"')[1].split("</section>")[0]
    spadit = page.split('id="spadit"')[1].split("</section>")[0]
    assert 'id="spadit-table1"' in spadit and 'id="spadit-accuracy_score"' in spadit
    acc = spadit.split('id="spadit-accuracy_score"')[1]
    assert acc.index("SpaDiT") < acc.index("Mean (per gene)")  # ranked best first
    plain = build_report(tmp_path / "plain.html", run="spadit", protocols=protocols, tables_dir=tmp_path / "none",
                         metric_files=metrics)
    assert 'id="spadit"' not in plain and "Metric definitions: spatialbenchmarking" in plain
