"""Can a click log tell position from relevance? The rank graph of Hager et al. (ICTIR 2025).

The ranks of a log form a graph whose edges join two ranks at which the same (query, document) was
shown. The position effect (examination per rank, up to the scale fixed at rank 1) is identifiable
only between ranks of one connected component: across components, a rank's lower click rate may as
well be its documents' lower relevance. A deterministic logging policy shows each document at one
rank only, so every rank is its own component and nothing is identifiable.

Hager, Deffayet, Renders, Zoeter, de Rijke, "Unidentified and Confounded? Understanding Two-Tower
Models for Unbiased Learning to Rank", ICTIR 2025.

>>> import numpy as np
>>> from click_models.counts import aggregate_cells_from_arrays
>>> doc = np.array([[0, 1, 2], [1, 0, 3]])  # documents 0 and 1 swap ranks 1 and 2; 2 and 3 stay at rank 3
>>> shown = np.ones((2, 3), bool)
>>> graph = rank_graph(aggregate_cells_from_arrays([(doc, shown & False, shown, None)], 4, 3))
>>> graph.components, graph.connected, graph.share_multi_rank
([[1, 2], [3]], False, 0.5)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .counts import ClickCounts


@dataclasses.dataclass(frozen=True)
class RankGraph:
    """The connected components of a log's rank graph.

    Attributes:
      components: groups of 1-based ranks (ranks never shown are left out), largest first.
      documents: distinct (query, document) pairs shown.
      multi_rank_documents: those shown at more than one rank.
    """

    components: list[list[int]]
    documents: int
    multi_rank_documents: int

    @property
    def connected(self) -> bool:
        """Whether every shown rank lies in one component (the position effect is identifiable)."""
        return len(self.components) <= 1

    @property
    def share_multi_rank(self) -> float:
        return self.multi_rank_documents / self.documents if self.documents else 0.0

    def to_json(self) -> dict:
        return {"identifiable": self.connected, "components": self.components,
                "documents": self.documents, "multi_rank_documents": self.multi_rank_documents,
                "share_multi_rank": round(self.share_multi_rank, 6),
                "reference": "Hager et al., ICTIR 2025: identifiable only where the rank graph is connected"}

    def warning(self) -> str | None:
        """One line saying what cannot be estimated, or None when the graph is connected."""
        if self.connected:
            return None
        groups = " ".join("{" + ",".join(map(str, c)) + "}" for c in self.components[:6])
        more = f" and {len(self.components) - 6} more" if len(self.components) > 6 else ""
        return (f"position bias is not identifiable from this log: its ranks form {len(self.components)} "
                f"unconnected groups ({groups}{more}); {100 * self.share_multi_rank:.1f}% of the documents were "
                "shown at more than one rank, so between groups position and relevance cannot be told apart "
                "(log with a stochastic policy, several policies or an intervention)")


def rank_graph(counts: ClickCounts) -> RankGraph:
    """The rank graph of aggregated counts (cells with impressions; the unseen-document row is ignored)."""
    K = counts.list_size
    keep = (counts.impressions > 0) & (counts.doc < counts.num_documents)
    doc, rank = counts.doc[keep], counts.rank[keep]
    pairs = np.unique(doc.astype(np.int64) * K + rank)
    doc, rank = pairs // K, pairs % K
    parent = np.arange(K)

    def find(r):
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    documents = multi = 0
    if len(doc):
        starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
        first_rank = np.repeat(rank[starts], np.diff(np.r_[starts, len(doc)]))
        documents = len(starts)
        multi = int(np.sum(np.diff(np.r_[starts, len(doc)]) > 1))
        for a, b in np.unique(np.stack([first_rank, rank], axis=1), axis=0):  # at most K^2 distinct edges
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    shown = np.unique(rank)
    groups: dict[int, list[int]] = {}
    for r in shown:
        groups.setdefault(find(r), []).append(int(r) + 1)
    components = sorted(groups.values(), key=lambda c: (-len(c), c[0]))
    return RankGraph(components, documents, multi)


def rank_graph_of_log(path, *, batch_size: int = 65_536) -> RankGraph:
    """:func:`rank_graph` of the Parquet click log at ``path`` (one pass to index, one to count)."""
    return rank_graph(ClickCounts.from_log(path, batch_size=batch_size))
