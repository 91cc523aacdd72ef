"""The numpy array types of training: the float32 model-input matrix and float64 predictions.

:class:`Float32Matrix` is what :meth:`Preprocessing.transform` builds and every model scores;
:class:`Float64Array` is what predictions and labels are returned as.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["Float32Matrix", "Float64Array"]

Float32Matrix: TypeAlias = npt.NDArray[np.float32]
"""A float32 ``(n, d)`` matrix: the preprocessed model input."""
Float64Array: TypeAlias = npt.NDArray[np.float64]
"""A float64 array: predictions (``(n,)`` or ``(n, k)``), labels and statistics."""
