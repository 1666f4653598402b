"""The method boundary: deliberate cheaters, run through the workflow's own code path, get nothing.

Each cheater (tests/cheaters/) returns the held-out truth when it finds it. Through the workflow
path (task file -> sandboxed child process) its output must not depend on the truth and must not be
better than an honest per-gene mean. Negative controls show that each cheater does cheat where the
boundary is absent (in-process, truth alive; results tree reachable; old statistics), so that the
tests here can fail.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from stbench.data.masks import MaskSpec, make_mask
from stbench.data.preprocess import PreprocessConfig, preprocess
from stbench.run.registry import discover
from stbench.run.sandbox import bwrap_available
from stbench.data.task import TaskSpec, build_task, truth_on_scale
from tests.workflow_path import CHEATERS, run, with_other_truth, write_inputs

CHEAT = discover(CHEATERS)
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) cannot run here: only process isolation")


@pytest.fixture
def near_tmp():
    """A results tree right under $TMPDIR, next to the sandbox folders: the easiest place to find it from."""
    d = Path(tempfile.mkdtemp(prefix="stbench-test-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _rmse(a, b, held):
    return float(np.sqrt(np.mean((a[held] - b[held]) ** 2)))


@pytest.mark.parametrize("scale", ["log", "zscore"])
@pytest.mark.parametrize("cheater", ["memory_cheater", "filesystem_cheater", "statistics_cheater"])
def test_cheaters_get_nothing_through_the_workflow_path(cheater, scale, small_dataset, near_tmp):
    pre, _ = preprocess(small_dataset[0], PreprocessConfig(n_genes=50))
    held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
    other = with_other_truth(pre, held)
    write_inputs(near_tmp / "a", pre, held, train, spec=TaskSpec(scale=scale))
    write_inputs(near_tmp / "b", other, held, train, spec=TaskSpec(scale=scale))
    out_a, ev_a = run(near_tmp / "a", cheater, {}, methods_dir=CHEATERS)
    out_b, _ = run(near_tmp / "b", cheater, {}, methods_dir=CHEATERS)
    assert ev_a["status"] == "ok", ev_a.get("error")
    np.testing.assert_array_equal(out_a, out_b, err_msg=f"{cheater} found the held-out truth")
    mean_a, ev_mean = run(near_tmp / "a", "mean", {"axis": "gene"})
    assert ev_a["metrics"]["rmse"] >= ev_mean["metrics"]["rmse"] - 1e-5, f"{cheater} beats the per-gene mean"


def test_impute_never_reads_preprocessed_data_or_masks(small_pre, small_mask, tmp_path):
    d = write_inputs(tmp_path, small_pre, *small_mask)
    (d / "preprocessed.h5ad").unlink()
    shutil.rmtree(d / "masks")
    for method in ("mean", "knn"):
        out, rec = run(tmp_path, method, {}, evaluate=False)
        assert rec["status"] == "ok", rec.get("error")


@needs_bwrap
def test_no_truth_file_is_reachable_from_the_method_process(small_pre, small_mask, near_tmp):
    write_inputs(near_tmp, small_pre, *small_mask)
    _, rec = run(near_tmp, "probe", {}, methods_dir=CHEATERS, evaluate=False)
    assert rec["isolation"] == "bwrap"
    assert rec["status"] == "ok", rec.get("error")


def test_process_isolation_alone_does_not_hide_a_nearby_results_tree(small_pre, small_mask, near_tmp):
    """Negative control of the probe, and the documented limit of `isolation: process`."""
    write_inputs(near_tmp, small_pre, *small_mask)
    _, rec = run(near_tmp, "probe", {}, methods_dir=CHEATERS, isolation="process", evaluate=False)
    assert rec["isolation"] == "process"
    assert rec["status"] == "failed" and "preprocessed.h5ad" in rec["error"], rec.get("error")


def test_memory_cheater_cheats_in_process_with_the_truth_alive(small_pre, small_mask):
    """Negative control: the old in-process call, with the preprocessed data alive in the caller."""
    held, train = small_mask
    task = build_task(small_pre, held, train)
    truth = truth_on_scale(small_pre, task)  # noqa: F841  (alive in this frame, as in the old runner)
    out = CHEAT["memory_cheater"].load_impute()(task)
    assert _rmse(out, truth, held) < 1e-5


def test_filesystem_cheater_cheats_when_scratch_is_inside_results(small_pre, small_mask, tmp_path):
    """Negative control: the old layout, scratch under results/<run>/<dataset>/<mask>/seed/<method>/."""
    held, train = small_mask
    d = write_inputs(tmp_path, small_pre, held, train)
    scratch = d / "m" / "seed0" / "filesystem_cheater" / "default" / "scratch"
    scratch.mkdir(parents=True)
    task = build_task(small_pre, held, train, scratch=scratch)
    out = CHEAT["filesystem_cheater"].load_impute()(task)
    assert _rmse(out, truth_on_scale(small_pre, task), held) < 1e-5


def test_statistics_cheater_recovers_held_out_means_from_all_entry_zscores(small_pre, small_mask):
    """Negative control: the old z-score (statistics over all entries, before masking) leaks each gene's
    held-out mean exactly; the task's statistics (observed entries) do not."""
    held, train = small_mask
    task = build_task(small_pre, held, train)
    logv = truth_on_scale(small_pre, task).astype(np.float64)
    old = (logv - logv.mean(0)) / np.where(logv.std(0) > 0, logv.std(0), 1)
    colsum = np.where(held, 0.0, old).sum(0)
    cols = held.sum(0) > 0
    guess = -colsum[cols] / held.sum(0)[cols]
    held_mean = np.array([old[held[:, j], j].mean() for j in np.flatnonzero(cols)])
    np.testing.assert_allclose(guess, held_mean, atol=1e-6)


def test_library_size_all_leaks_spot_totals_when_every_gene_is_kept(small_dataset, near_tmp):
    """Why `library_size: observed` is the default: under the paper's `all`, with every gene kept (as on the
    paper's ~1000-gene datasets), the statistics cheater learns each spot's held-out total and beats the
    per-gene mean; under `observed` it does not."""
    rmse = {}
    for lib in ("all", "observed"):
        pre, _ = preprocess(small_dataset[0], PreprocessConfig(n_genes=10_000, min_detection=0.0))
        assert (pre.obs["other_counts"] == 0).all()
        held, train = make_mask(np.asarray(pre.layers["counts"]) > 0, MaskSpec(), seed=0)
        write_inputs(near_tmp / lib, pre, held, train, spec=TaskSpec(library_size=lib))
        _, ev = run(near_tmp / lib, "statistics_cheater", {}, methods_dir=CHEATERS)
        _, ev_mean = run(near_tmp / lib, "mean", {"axis": "gene"})
        rmse[lib] = (ev["metrics"]["rmse"], ev_mean["metrics"]["rmse"])
    assert rmse["all"][0] < rmse["all"][1] - 0.01  # measured: 0.948 against 0.970 (a weak leak, but a leak)
    assert rmse["observed"][0] >= rmse["observed"][1] - 1e-5


def test_near_perfect_output_is_flagged_suspect_not_a_winner(small_pre, small_mask, tmp_path):
    from stbench.steps import SUSPECT, evaluate_step
    from stbench.atomic import write_json, write_npz

    held, train = small_mask
    d = write_inputs(tmp_path, small_pre, held, train)
    task = build_task(small_pre, held, train)
    out = tmp_path / "run"
    write_npz(out / "imputed.npz", imputed=truth_on_scale(small_pre, task))
    write_json(out / "run.json", {"method": "oracle", "variant": "default", "seed": 0, "dataset": "ds", "status": "ok"})
    ev = evaluate_step(d / "preprocessed.h5ad", d / "masks" / "m" / "seed0.npz", d / "tasks" / "m" / "seed0.npz",
                       out / "imputed.npz", out / "run.json", out / "metrics.json")
    assert held.sum() >= 100 and ev["status"] == SUSPECT
    from stbench.results.tables import collect, summarise, table1_wide

    s = summarise(collect([out / "metrics.json"], [{"method": "oracle", "name": "default", "label": "Oracle"}]))
    assert (s["status"] == SUSPECT).all() and s["mean"].isna().all()
    assert (table1_wide(s) == "suspect").all().all()


def test_a_requested_level_that_cannot_be_had_fails_before_any_child(small_pre, small_mask, tmp_path, monkeypatch):
    """No silent fallback: `isolation: bwrap` where bubblewrap cannot run fails the job, and no method ran."""
    import stbench.run.sandbox as sandbox

    write_inputs(tmp_path, small_pre, *small_mask)
    monkeypatch.setattr(sandbox, "bwrap_probe", lambda: (False, "bwrap is not installed (test)"))
    monkeypatch.setattr(sandbox, "supervise", lambda *a, **k: pytest.fail("a child was started"))
    with pytest.raises(sandbox.SandboxError, match="isolation 'bwrap' was requested.*not installed"):
        run(tmp_path, "mean", {}, isolation="bwrap", evaluate=False)
    assert sandbox.resolve_isolation("auto") == "process"  # auto decides in the parent, before the child


def test_an_environment_under_tmp_is_bound_over_the_fresh_tmp(monkeypatch):
    """A virtual environment kept under /tmp (a clone there, say) must stay visible: bubblewrap applies its
    arguments in order, so the environment's read-only bind must come after the fresh tmpfs on /tmp (before the
    fix the probe failed with "execvp ...: No such file", and `auto` quietly meant `process`)."""
    from stbench.run import sandbox

    monkeypatch.setattr(sandbox, "_bwrap_exe", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(sandbox, "_prefixes", lambda: [Path("/tmp/some-clone/.venv")])
    a = sandbox._bwrap_args(None, network=False, gpu=False)
    tmpfs = max(i for i in range(len(a) - 1) if a[i] == "--tmpfs" and a[i + 1] == "/tmp")
    bind = a.index("/tmp/some-clone/.venv")
    assert a[bind - 1] == "--ro-bind" and bind > tmpfs
