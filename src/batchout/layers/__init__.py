"""BatchOut layers and the named slots models expose for them.

Usage: ``from batchout.layers import configure_batchout, batchout_labels, BatchOutSite``
"""

from batchout.layers.batchout import (
    BatchOut,
    BatchOutFinal,
    BatchOutSite,
    batchout_labels,
    configure_batchout,
    different_label_partners,
    find_sites,
    num_perturbed,
)

__all__ = [
    "BatchOut",
    "BatchOutFinal",
    "BatchOutSite",
    "batchout_labels",
    "configure_batchout",
    "different_label_partners",
    "find_sites",
    "num_perturbed",
]
