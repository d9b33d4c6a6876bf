"""Test helpers shared by several test files."""

from __future__ import annotations

import numpy as np


def controlled_dynamics(confidence, variability, n_classes=3, n_epochs=4, seed=0):
    """Multiclass dynamics whose gold-label statistics are exactly ``confidence`` / ``variability``.

    p_e alternates confidence + variability and confidence - variability (an even number of
    epochs), so the mean is the confidence and the population std the variability; gold is
    class 0 and the other classes share the rest equally.
    """
    confidence, variability = np.asarray(confidence, float), np.asarray(variability, float)
    sign = np.where(np.arange(n_epochs) % 2 == 0, 1.0, -1.0)[:, None]
    p = confidence[None] + sign * variability[None]
    probs = np.empty((n_epochs, len(confidence), n_classes))
    probs[:, :, 0] = p
    probs[:, :, 1:] = ((1.0 - p) / (n_classes - 1))[:, :, None]
    return probs.astype(np.float32), np.zeros(len(confidence), dtype=np.int64)
