"""GraphSCI's gene-to-gene graph: |Pearson r| above a threshold, from observed entries only.

Upstream (tutorial.ipynb, "Construction of gene-to-gene relationships") correlates every gene pair
over all cells of the raw count matrix and links pairs with |r| > 0.3 (no self-loops). Here some
entries are held out, so each pair's correlation is computed over the spots where BOTH genes are
observed (pairwise-complete Pearson, ``stbench.kit.methodkit.pairwise_complete_pearson``).
"""

from __future__ import annotations

import numpy as np

from stbench.kit.methodkit import pairwise_complete_pearson


def gene_graph(x: np.ndarray, mask: np.ndarray, threshold: float = 0.3):
    """Undirected gene graph as a (2, E) torch long tensor: pairs i != j with |r_ij| > threshold.

    Also returns the dense (G, G) 0/1 adjacency (float32 numpy), the label of the graph decoder.
    """
    import torch

    r = pairwise_complete_pearson(x, mask)
    adj = (np.abs(r) > threshold)
    np.fill_diagonal(adj, False)
    src, dst = np.nonzero(adj)
    edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long)
    return edge_index, adj.astype(np.float32)
