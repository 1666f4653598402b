"""The run's one summary of rows without a result: failed, suspect and skipped runs, each with its reason,
its traceback (failed rows) and its impute log; and whether they make the run exit non-zero (``fail_on``).

Written by the ``failures`` rule to ``results/<run>/tables/failures.csv`` and ``failures.md``, printed at
the end of the run (the Snakefile's ``onsuccess:``, :func:`finish`) and shown in the report.
A skipped row (e.g. ``skipped: no reference``) is a stated non-result, never a failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from stbench.atomic import write_csv, write_text
from stbench.config import schema
from stbench.data.masks import MaskSpec

FAIL_ON = ("none", "failed", "any")  # any: failed or suspect rows make the run exit non-zero (the schema's enum)
ORDER = {"failed": 0, "suspect": 1, "skipped": 2}
COLUMNS = ["kind", "dataset", "mask", "seed", "method", "variant", "status", "reason", "log"]


def default_fail_on() -> str:
    """The config's default (workflow/schemas/config.schema.yaml, the one home of workflow-level defaults)."""
    return schema()["properties"]["fail_on"]["default"]


def impute_log(dataset, mask, seed, method, variant) -> str:
    """The impute job's log, relative to the run folder (``workflow/rules/impute.smk``'s ``log:``)."""
    return f"logs/impute/{dataset}_{mask}_seed{seed}_{method}_{variant}.log"


def problem_runs(metric_files) -> list[dict]:
    """Every run whose status is not 'ok' (failed, skipped, suspect), with its reason, its traceback
    (from run.json beside metrics.json) and its log, failed first."""
    out = []
    for f in metric_files:
        rec = json.loads(Path(f).read_text())
        status = str(rec.get("status"))
        if status == "ok":
            continue
        try:
            mask = MaskSpec.from_dict(dict(rec.get("mask") or {})).id
        except (TypeError, ValueError):
            mask = "?"
        run_json = Path(f).with_name("run.json")
        run = json.loads(run_json.read_text()) if run_json.exists() else {}
        kind = status.split(":")[0].split(" ")[0]
        out.append({"kind": kind, "dataset": rec.get("dataset"), "mask": mask, "seed": rec.get("seed"),
                    "method": rec.get("method"), "variant": rec.get("variant"), "status": status,
                    "reason": rec.get("error") or status, "traceback": run.get("traceback") or "",
                    "log": impute_log(rec.get("dataset"), mask, rec.get("seed"), rec.get("method"), rec.get("variant"))})
    return sorted(out, key=lambda r: (ORDER.get(r["kind"], 3), r["dataset"] or "", r["method"] or "",
                                      str(r["variant"]), str(r["seed"])))


def counts(rows) -> dict:
    return {k: sum(r["kind"] == k for r in rows) for k in ORDER}


def should_fail(rows, fail_on: str) -> bool:
    """Whether these rows make the run exit non-zero under ``fail_on`` (none | failed | any)."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, got {fail_on!r}")
    n = counts(rows)
    return {"none": False, "failed": n["failed"] > 0, "any": n["failed"] + n["suspect"] > 0}[fail_on]


def markdown(rows, n_runs: int) -> str:
    n = counts(rows)
    lines = [f"# Failed, suspect and skipped runs: {n['failed']} failed, {n['suspect']} suspect, "
             f"{n['skipped']} skipped of {n_runs}", ""]
    if not rows:
        return "\n".join(lines + ["Every run gave a result.", ""])
    lines += ["| status | dataset | mask | seed | method | variant | reason | log |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reason = str(r["reason"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['kind']} | {r['dataset']} | {r['mask']} | {r['seed']} | {r['method']} | {r['variant']} | "
                     f"{reason} | [log](../{r['log']}) |")
    for r in rows:
        if r["traceback"]:
            lines += ["", f"## {r['method']}/{r['variant']} on {r['dataset']} {r['mask']} seed {r['seed']}", "",
                      "```", r["traceback"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_summary(metric_files, out_csv, out_md) -> list[dict]:
    """Write ``failures.csv`` (one row per problem run, no traceback) and ``failures.md`` (with tracebacks)."""
    metric_files = list(metric_files)
    rows = problem_runs(metric_files)
    write_csv(out_csv, pd.DataFrame([{k: r[k] for k in COLUMNS} for r in rows], columns=COLUMNS), index=False)
    write_text(out_md, markdown(rows, len(metric_files)))
    return rows


def terminal_text(rows, run_dir) -> str:
    n = counts(rows)
    head = f"stbench: {n['failed']} failed, {n['suspect']} suspect, {n['skipped']} skipped run(s)"
    out = [head + (f" (summary: {run_dir}/tables/failures.md)" if rows else "")]
    for r in rows:
        reason = str(r["reason"]).splitlines()[0] if str(r["reason"]) else ""
        out.append(f"  {r['kind']:8s} {r['dataset']} {r['mask']} seed{r['seed']} {r['method']}/{r['variant']}: "
                   f"{reason[:200]}  [{run_dir}/{r['log']}]")
    return "\n".join(out)


def finish(run_dir, fail_on: str, stream=None) -> bool:
    """End of a run: print the summary of ``<run_dir>/tables/failures.csv`` (when the run wrote one) and
    return whether the run must exit non-zero under ``fail_on``."""
    stream = stream if stream is not None else sys.stderr
    csv = Path(run_dir) / "tables" / "failures.csv"
    if not csv.exists():
        return False
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rows = df.to_dict("records")
    stream.write(terminal_text(rows, run_dir) + "\n")
    fail = should_fail(rows, fail_on)
    if fail:
        stream.write(f"stbench: exiting non-zero (fail_on: {fail_on}; set fail_on: none, or STBENCH_FAIL_ON=none, "
                     "to exit 0 with failed rows)\n")
    stream.flush()
    return fail
