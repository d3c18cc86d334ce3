"""BatchOut layers (the paper's ``BatchOut`` and the final-layer ``BatchOutFinal``), the named slots
(``BatchOutSite``) models expose for them, and ``METHODS``, the training methods they define.

Usage: ``from batchout.layers import configure_batchout, batchout_labels, BatchOutSite``

Pure torch modules: must not import models, training, attacks or any I/O.
"""

from batchout.layers.batchout import (
    METHODS,
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
    "METHODS",
    "BatchOut",
    "BatchOutFinal",
    "BatchOutSite",
    "batchout_labels",
    "configure_batchout",
    "different_label_partners",
    "find_sites",
    "num_perturbed",
]
