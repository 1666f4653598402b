# The stMCDI benchmark: download -> prepare -> preprocess -> mask -> task -> impute -> evaluate -> tables/figures.
# Full paper run:  snakemake --cores 8 --resources gpu=1
# Demo:            snakemake --cores 2 --configfile workflow/demo.yaml
import os
import sys

import yaml
from snakemake.utils import min_version

min_version("8.0")

# config.yaml (the paper run) is the default; a --configfile replaces it rather than merging
# into it, so that the demo or a user's config never inherits the paper's six datasets.
if not config:
    with open(os.path.join(workflow.basedir, "config.yaml")) as fh:
        config.update(yaml.safe_load(fh))


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/impute.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
        reference_targets(),
    default_target: True


# The end of a run: one summary of the failed, suspect and skipped rows (tables/failures.md), and the exit
# status `fail_on` (config, or STBENCH_FAIL_ON) asks for: by default non-zero when any row failed.
onsuccess:
    from snakemake.exceptions import WorkflowError

    from stbench.results.failures import finish

    if finish(R, os.environ.get("STBENCH_FAIL_ON") or config["fail_on"]):
        raise WorkflowError(f"rows failed: see {R}/tables/failures.md")


onerror:
    print(f"stbench: a workflow job failed (not a method's row, which never stops the run): see its log under "
          f"{LOGS}/ and Snakemake's log above", file=sys.stderr)
