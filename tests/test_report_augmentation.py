"""A run with reference settings shows the reference-augmentation table and figure in its report (issue 28)."""

import json

import pandas as pd

from stbench.data.reference_generators.protocol import parse_settings
from stbench.data.reference_generators.report import augmentation_figure, augmentation_table, to_markdown
from stbench.results.report import build_report

SETTINGS = parse_settings({"full": {}, "thin": {"reference_transform": {"subsample": 0.1}},
                           "thin_scld": {"reference_transform": {"subsample": 0.1}, "augment": "scld"}})
PCC = {"full": 0.8, "thin": 0.7, "thin_scld": 0.65}


def _runs(root):
    """Tangram under three reference settings and the Mean (no setting), two seeds."""
    variants = [{"method": "tangram", "name": f"default__{s}", "label": f"Tangram [{SETTINGS[s].describe()}]",
                 "table": "table1", "reference_setting": s} for s in PCC]
    variants.append({"method": "mean", "name": "per_gene", "label": "Mean (per gene)", "table": "table1",
                     "reference_setting": ""})
    files = []
    for seed in (0, 1):
        for v in variants:
            pcc = PCC.get(v["reference_setting"], 0.5) + 0.02 * seed
            d = root / "demo" / "random-0.1-all" / f"seed{seed}" / v["method"] / v["name"]
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps({
                "dataset": "demo", "method": v["method"], "variant": v["name"], "seed": seed, "status": "ok",
                "error": None, "wall_time_s": 1.0, "mask": {"strategy": "random", "ratio": 0.1, "among": "all"},
                "metrics": {"pcc": pcc, "pcc_gene": pcc, "cosine": pcc, "rmse": 1 - pcc, "mae": 1 - pcc}}))
            files.append(d / "metrics.json")
    return files, variants


def test_the_augmentation_table_and_figure_reach_the_report(tmp_path):
    files, variants = _runs(tmp_path / "runs")
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    tables.mkdir()
    ref = [v for v in variants if v["reference_setting"]]
    df = augmentation_table([f for f in files if "tangram" in str(f)], ref, SETTINGS)   # as the workflow rule
    df.to_csv(tables / "reference_augmentation.csv", index=False)
    png = figures / "reference_augmentation.png"
    augmentation_figure(df, png)
    md = to_markdown(df)
    assert "| tangram | 0.1 per type + scld | 0.660±0.010 (-0.150) | 0.340±0.010 (+0.150) |" in md
    protocols = {"demo": {"preprocess": {}, "masks": [{"strategy": "random", "ratio": 0.1}], "seeds": [0, 1]}}
    page = build_report(tmp_path / "report.html", run="scld", protocols=protocols, tables_dir=tables,
                        metric_files=files, figures={"reference_augmentation": [png]})
    assert '<a href="#augmentation">' in page
    sec = page.split('id="augmentation"')[1].split("</section>")[0]
    rows = [r for r in sec.split("<tr>") if r.startswith("<td>tangram")]
    assert len(rows) == 3                                                   # one row per setting, in config order
    assert "full reference" in rows[0] and "0.810±0.010" in rows[0] and "(-" not in rows[0]
    assert "0.1 per type</td>" in rows[1] and "0.710±0.010 (-0.100)" in rows[1]
    assert "0.1 per type + scld" in rows[2] and "0.660±0.010 (-0.150)" in rows[2]
    assert "mean" not in sec.split("<tbody>")[1].lower().split("</tbody>")[0]  # only reference methods
    assert '<img src="data:image/png;base64,' in sec and "reference_augmentation.png" in sec
    assert pd.read_csv(tables / "reference_augmentation.csv")["setting"].nunique() == 3

    plain = build_report(tmp_path / "plain.html", run="plain", protocols=protocols, tables_dir=tmp_path / "none",
                         metric_files=files)
    assert 'id="augmentation"' not in plain and "#augmentation" not in plain


def test_one_seed_gives_no_std():
    """With one seed a cell reads 'mean (n=1)', as Table 1's, not a '±0.000' that looks like a measured spread."""
    from stbench.data.reference_generators.report import augmentation_blocks

    df = pd.DataFrame({"dataset": "d", "mask_strategy": "random", "ratio": 0.1, "method": "spage",
                       "setting": ["full", "thin"], "setting_label": ["full reference", "0.1 per type"], "metric": "pcc",
                       "mean": [0.8, 0.7], "std": [0.0, 0.0], "n_seeds": 1, "status": "ok", "vs_full": [0.0, -0.1]})
    rows = augmentation_blocks(df)[0]["rows"]
    assert [r["cells"] for r in rows] == [["0.800 (n=1)"], ["0.700 (n=1) (-0.100)"]]


def test_two_variants_of_one_method_stay_two_rows():
    """Tangram at two settings under the same reference setting: two rows, each with its own number."""
    from stbench.data.reference_generators.report import augmentation_blocks

    df = pd.DataFrame({"dataset": "d", "mask_strategy": "random", "ratio": 0.1, "method": "tangram",
                       "base_variant": ["default", "cheap"], "setting": "full", "setting_label": "full reference",
                       "metric": "pcc", "mean": [0.8, 0.7], "std": 0.0, "n_seeds": 1, "status": "ok", "vs_full": 0.0})
    rows = augmentation_blocks(df)[0]["rows"]
    assert [(r["method"], r["cells"]) for r in rows] == [("tangram", ["0.800 (n=1)"]), ("tangram (cheap)", ["0.700 (n=1)"])]
