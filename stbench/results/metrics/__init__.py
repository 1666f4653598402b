"""Metrics of imputation accuracy, one place for all methods (the top-level metrics/README.md points here).

Pure numpy. Every function scores predictions against the truth on the held-out entries only.
"""

from stbench.results.metrics.imputation import (
    METRICS, HIGHER_IS_BETTER, SPADIT, evaluate_imputation, flat_metrics, per_gene_metrics, accuracy_score,
)
from stbench.results.metrics.spadit import DEFINITIONS, accuracy_score_spadit, js_spadit, ssim_spadit

__all__ = ["DEFINITIONS", "SPADIT", "accuracy_score_spadit", "js_spadit", "ssim_spadit", "METRICS", "HIGHER_IS_BETTER", "evaluate_imputation", "flat_metrics", "per_gene_metrics", "accuracy_score"]
