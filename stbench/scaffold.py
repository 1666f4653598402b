"""`stbench new-method NAME`: write a working method folder, so that a newcomer starts from code that runs.

The folder holds `method.yaml` (defaults, limits, presets and the environment, in one place), an
`impute.py` whose signature repeats no default (the registry passes every parameter resolved) and a
README skeleton with the sections every method README here has. The folder is written under a
temporary name and renamed into place, so a failed call leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from stbench.errors import ConfigError
from stbench.run.registry import DEFAULT_ENV, NAME_RE, PROJECT_ROOT, default_methods_dir

_MANIFEST = """\
name: {name}
title: {title}
citation: "Who et al. (year), where: the paper this method reimplements or wraps"
url: https://example.org/where-the-upstream-code-lives
implementation: reimplemented      # or: wrapped (calls the upstream package), or: harness baseline
needs: {{reference: false, gpu: false}}   # reference: true gets task.reference (an scRNA-seq AnnData)
resources: {{gpu: 0, mem_mb: 2000, threads: 1}}   # mem_mb is also the run's memory limit
env: {env}              # its conda environment (relative to the project root); copy it to add packages
params:                            # the defaults: the ONLY place they are written (impute() repeats none)
  alpha: 0.5                       # weight of the gene mean against the spot mean
param_schema:                      # the limits, checked before any job runs
  alpha: {{type: number, minimum: 0, maximum: 1}}
presets:
  quick: {{}}                        # the demo's settings (minutes on 2 cores)
  test: {{}}                         # the contract tests' settings (seconds on a ~70-spot task)
fidelity: "what is faithful to the paper, and every deviation"
"""

_IMPUTE = '''\
"""{title}: fill held-out entries (NaN in task.observed) with a blend of gene and spot means.

Replace this body with your method; keep the signature: the registry passes every parameter of
method.yaml, resolved (defaults, then the preset, then the config's overrides)."""

import numpy as np


def impute(task, *, alpha):
    x, m = task.observed, task.observed_mask
    fit = m & np.asarray(task.train_spots, dtype=bool)[:, None]  # the inductive protocol: fit on train spots only
    gene = np.where(fit, x, 0.0).sum(0) / np.maximum(fit.sum(0), 1)
    spot = np.where(m, x, 0.0).sum(1) / np.maximum(m.sum(1), 1)
    fill = alpha * gene[None, :] + (1 - alpha) * spot[:, None]
    return np.where(m, x, fill).astype(np.float32)
'''

_README = """\
# {title} (`{name}`)

**What it is.** One paragraph: the method, its paper and the upstream code (repository and commit read).

**Implementation.** Wrapped or reimplemented; if reimplemented, why, and what was read.

**Deviations from the paper / upstream.** Every one, with the reason.

**Presets.** `paper` (the defaults in `method.yaml`), `quick` (the demo), `test` (the contract tests).

**Results on real data.** One row on `../shared/data/seqfish_field43` or another real section, beside
the per-gene Mean and KNN, under the default protocol. Say so where it loses to the per-gene Mean.
"""


def new_method(name: str, methods_dir=None, title: str | None = None, env: str = DEFAULT_ENV) -> Path:
    """Write ``methods/<name>/`` (method.yaml, impute.py, README.md) and return its path."""
    if not NAME_RE.match(name or ""):
        raise ConfigError(f"method name {name!r}: must match {NAME_RE.pattern} (lower case, digits, underscores)")
    if not (PROJECT_ROOT / env).is_file():
        raise ConfigError(f"env file {env!r} does not exist under {PROJECT_ROOT}")
    root = Path(methods_dir) if methods_dir else default_methods_dir()
    dest = root / name
    if dest.exists():
        raise ConfigError(f"{dest}: already exists; choose another name or remove it first")
    root.mkdir(parents=True, exist_ok=True)
    title = title or name.replace("_", " ").title()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        (tmp / "method.yaml").write_text(_MANIFEST.format(name=name, title=title, env=env))
        (tmp / "impute.py").write_text(_IMPUTE.format(title=title))
        (tmp / "README.md").write_text(_README.format(name=name, title=title))
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest
