"""The config: one home for protocol defaults, variant resolution, validation before any job."""

from dataclasses import asdict, fields

import pytest
import yaml

from stbench import config as cfg
from stbench.errors import ConfigError
from stbench.data.masks import AMONG, STRATEGIES, MaskSpec
from stbench.data.preprocess import PreprocessConfig
from stbench.data.task import LIBRARY_SIZES, SCALES, TaskSpec


def _config(**kw):
    return {"datasets": {"sim": {"format": "simulate"}}, "methods": {"mean": {}}, **kw}


def test_schema_defaults_and_choices_are_the_dataclasses():
    s = cfg.schema()
    pre = s["properties"]["preprocess"]["properties"]
    assert {k: v["default"] for k, v in pre.items()} == {**asdict(PreprocessConfig()), **asdict(TaskSpec())}
    assert pre["scale"]["enum"] == list(SCALES) and pre["library_size"]["enum"] == list(LIBRARY_SIZES)
    mask = s["properties"]["masks"]["items"]["properties"]
    assert {k: v["default"] for k, v in mask.items()} == asdict(MaskSpec())
    assert mask["strategy"]["enum"] == list(STRATEGIES) and mask["among"]["enum"] == list(AMONG)
    raw = yaml.safe_load(cfg.SCHEMA.read_text())  # the YAML file itself does not repeat them
    assert "properties" not in raw["properties"]["preprocess"] and "items" not in raw["properties"]["masks"]
    assert {f.name for f in fields(PreprocessConfig)} | {f.name for f in fields(TaskSpec)} == set(pre)


def test_with_defaults_fills_the_top_level_from_the_schema():
    c = cfg.with_defaults(_config())
    assert (c["run"], c["device"], c["isolation"], c["seeds"]) == ("default", "auto", "auto", [0])
    from stbench.data.dataset_blocks import DEFAULT_CACHE_DIR

    assert c["cache_dir"] == DEFAULT_CACHE_DIR


@pytest.mark.parametrize("bad,msg", [
    ({"preprocess": {"scale": "cpm"}}, "preprocess/scale: 'cpm' is not one of"),
    ({"preprocess": {"library_size": "median"}}, "preprocess/library_size"),
    ({"masks": [{"ratio": 1.5}]}, "masks/0/ratio"),
    ({"masks": [{"strategy": "blocks"}]}, "masks/0/strategy"),
    ({"isolation": "none"}, "isolation"),
    ({"methods": {"knn": {"variants": {"default": {"params": {"k": "banana"}}}}}}, "parameter k='banana' is invalid"),
    ({"methods": {"knn": {"variants": {"default": {"params": {"kk": 3}}}}}}, "unknown parameter(s) kk"),
    ({"methods": {"nosuch": {}}}, "unknown method 'nosuch'"),
    ({"methods": {"knn": {"priority": "high"}}}, "priority"),
    ({"datasets": {"x": {"format": "xlsx"}}}, "dataset 'x': unknown or missing format 'xlsx'"),
    ({"datasets": {"x": {"recipe": "NOPE"}}}, "dataset 'x': unknown recipe 'NOPE'"),
])
def test_validate_names_the_bad_value(bad, msg):
    with pytest.raises(ConfigError) as e:
        cfg.validate(cfg.with_defaults(_config(**bad)))
    assert msg in str(e.value)


def test_dataset_override_wins_for_that_dataset_only():
    c = _config(preprocess={"n_genes": 300}, datasets={"a": {"format": "simulate"},
                                                        "b": {"format": "simulate", "preprocess": {"scale": "zscore"}}})
    assert cfg.preprocess_config(c, "a") == PreprocessConfig(n_genes=300)
    assert cfg.preprocess_config(c, "b") == PreprocessConfig(n_genes=300)  # scale is the task step's
    assert cfg.task_spec(c, "b") == TaskSpec(scale="zscore") and cfg.task_spec(c, "a") == TaskSpec()
    p = cfg.protocols(c)
    assert p["b"]["task"]["scale"] == "zscore" and p["a"]["task"]["scale"] == "log"
    assert "scale" not in p["b"]["preprocess"]
    with pytest.raises(ConfigError, match="dataset 'a': unknown preprocess option.*scal"):
        cfg.task_spec(_config(datasets={"a": {"format": "simulate", "preprocess": {"scal": "log"}}}), "a")


def test_variant_defaults_apply_once_and_can_be_refused():
    c = _config(methods={"stmcdi": {"preset": "test", "variant_defaults": {"params": {"epochs": 1}, "table": "table3"},
                                    "variants": {"default": {"use_defaults": False},
                                                 "gat": {"params": {"encoder": "gat"}},
                                                 "mlp": {"params": {"encoder": "mlp", "epochs": 2}, "table": "table2"}}}})
    v = {x.name: x for x in cfg.variants(c)}
    assert v["default"].params["epochs"] == 3 and v["default"].table == "table1"  # the test preset's value
    assert v["gat"].params["epochs"] == 1 and v["gat"].params["encoder"] == "gat" and v["gat"].table == "table3"
    assert v["mlp"].params["epochs"] == 2 and v["mlp"].table == "table2"
    assert v["gat"].env.endswith("envs/torch.yaml")


def test_a_method_priority_reaches_its_variants():
    c = _config(methods={"stmcdi": {"preset": "test", "priority": 2, "variants": {"default": {}, "gat": {"params": {"encoder": "gat"}}}},
                         "knn": {}})
    v = {(x.method, x.name): x.priority for x in cfg.variants(c)}
    assert v == {("stmcdi", "default"): 2, ("stmcdi", "gat"): 2, ("knn", "default"): 0}


def test_the_shipped_configs_validate():
    from stbench.run.registry import default_methods_dir

    root = default_methods_dir().parent
    demo = yaml.safe_load((root / "workflow" / "demo.yaml").read_text())
    for name in ("config.yaml", *sorted(str(p.relative_to(root)) for p in (root / "workflow").glob("*.yaml"))):
        c = yaml.safe_load((root / name).read_text())
        if "datasets" not in c:  # an overlay (demo_countsplit.yaml): read after demo.yaml, as make demo does
            c = {**demo, **c}
        cfg.validate(cfg.with_defaults(c))


def test_protocol_sweep_expands_datasets_and_groups_them():
    c = cfg.expand_sweep(_config(protocol_sweep={"gene_selection": ["cv", "hvg"], "scale": ["log", "zscore"]},
                                 datasets={"demo": {"format": "simulate", "preprocess": {"n_genes": 100}}}))
    assert sorted(c["datasets"]) == ["demo__cv_log", "demo__cv_zscore", "demo__hvg_log", "demo__hvg_zscore"]
    assert cfg.preprocess_config(c, "demo__hvg_zscore") == PreprocessConfig(n_genes=100, gene_selection="hvg")
    assert cfg.task_spec(c, "demo__hvg_zscore") == TaskSpec(scale="zscore")
    assert set(cfg.sweep_groups(c).values()) == {"demo"}
    with pytest.raises(ConfigError, match="sim__pca/preprocess/gene_selection: 'pca' is not one of"):
        cfg.validate(cfg.with_defaults(cfg.expand_sweep(_config(protocol_sweep={"gene_selection": ["pca"]}))))


def test_recipes_pin_the_papers_gene_rule_and_a_dataset_block_still_wins():
    c = _config(preprocess={"n_genes": 500}, datasets={"HBC": {"recipe": "HBC"}, "HP": {"recipe": "HP", "preprocess": {"gene_selection": "mean"}},
                                                      "mine": {"format": "simulate"}})
    assert cfg.preprocess_config(c, "HBC").gene_selection == "cv" and cfg.preprocess_config(c, "HBC").n_genes == 500
    assert cfg.preprocess_config(c, "HP").gene_selection == "mean"
    assert cfg.preprocess_config(c, "mine").gene_selection == PreprocessConfig().gene_selection == "hvg"
