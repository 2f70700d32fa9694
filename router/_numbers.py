"""Arrays as plain JSON numbers."""

from __future__ import annotations

import numpy as np


def float32_rows(array: np.ndarray) -> list:
    """A 1-D or 2-D array as nested lists of float32 values, each in its shortest decimal form
    (read back with ``np.asarray(..., dtype=np.float32)`` it is the same float32 array)."""
    values = np.asarray(array, dtype=np.float32)
    if values.ndim == 1:
        return [float(str(v)) for v in values]
    return [[float(str(v)) for v in row] for row in values]
