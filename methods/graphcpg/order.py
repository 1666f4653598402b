"""The 1-D order of genes that stands in for GraphCpG's genomic order of CpG loci.

GraphCpG's "neighbouring loci" of a target CpG are the ``segment_size`` consecutive CpG sites of
its chromosome centred on it: neighbouring CpGs are co-methylated, so their states are informative.
Genes of a spatial section have no such order. Two orders are offered:

* ``correlation`` (default): genes ordered so that positively correlated genes are adjacent:
  average-linkage hierarchical clustering of the genes on the distance 1 - r (r: Pearson
  correlation over the spots where both genes are observed, held-out entries never read), leaves
  in scipy's optimal leaf order (adjacent leaves as similar as possible). A window then holds
  genes whose expression rises and falls with the target gene's, as neighbouring CpGs are
  co-methylated, which is what makes a CpG window informative. (1 - |r| would also put
  anti-correlated genes side by side; then "the neighbours are high" means "high" for some
  windows and "low" for others, a rule the network cannot learn once for all windows.)
* ``task``: the task's own gene order (as the preprocessing kept them); it carries no biological
  neighbourhood and is offered only as a control.
"""

from __future__ import annotations

import numpy as np

from stbench.kit.methodkit import COLUMN_ORDERS, column_order

LOCUS_ORDERS = COLUMN_ORDERS


def locus_order(values: np.ndarray, mask: np.ndarray, how: str = "correlation") -> np.ndarray:
    """Permutation of the genes (columns of ``values``) defining which genes are "nearby loci"
    (``methodkit.column_order``)."""
    return column_order(values, mask, how)
