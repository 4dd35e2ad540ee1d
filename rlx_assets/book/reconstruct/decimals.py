"""Exact decimals: floats <-> integer units at a scale, and the errors every reconstruction
module raises. Imports only numpy and numba (the bottom of ``book.reconstruct``)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from numba import njit

DECIMAL_PRECISION = 18  # Parquet INT64 decimals; units stay below 2**52
MAX_SCALE = 15
_I64_MIN = int(np.iinfo(np.int64).min)
_I64_MAX = int(np.iinfo(np.int64).max)
_MAX_UNITS = float(2**52)  # below this a float is the nearest to at most one decimal per scale
_POW10 = np.array([10.0**i for i in range(MAX_SCALE + 1)])


class ReconstructionError(ValueError):
    """The inputs cannot be reconstructed (no seed, values that are not exact decimals, ...)."""


class _PlanMiss(Exception):
    """A row contradicts the plan taken from the first batches: redo from a full scan."""


@njit(cache=True, nogil=True)
def _decimals_needed(values, scale, skip_nan):
    """Smallest scale >= ``scale`` at which every value is an exact decimal (round(x * 10**s)
    / 10**s == x with fewer than 2**52 units); returns (scale, index of a value that is not
    representable, -1 when all are)."""
    for i in range(values.shape[0]):
        x = values[i]
        if x != x:
            if skip_nan:
                continue
            return scale, i
        while True:
            p = _POW10[scale]
            k = np.round(x * p)
            if abs(k) < _MAX_UNITS and k / p == x:
                break
            if scale == MAX_SCALE:
                return scale, i
            scale += 1
    return scale, -1


@njit(cache=True, nogil=True)
def _to_units(values, scale, nan_value, out):
    """Floats -> integers at ``scale`` into ``out``, NaN -> ``nan_value``; returns the index of
    the first value that is not exact at this scale (or is NaN while ``nan_value`` is
    ``_I64_MIN``: NaN not allowed), -1 when all are."""
    p = _POW10[scale]
    for i in range(values.shape[0]):
        x = values[i]
        if x != x:
            if nan_value == _I64_MIN:
                return i
            out[i] = nan_value
            continue
        k = np.round(x * p)
        if not (abs(k) < _MAX_UNITS and k / p == x):
            return i
        out[i] = np.int64(k)
    return -1


def units(
    values: np.ndarray,
    scale: int,
    what: str,
    nan_value: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Float64 values -> int64 units at ``scale``, exactly (ReconstructionError otherwise);
    NaN becomes ``nan_value`` and is an error when it is None."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    if out is None:
        out = np.empty(values.shape[0], dtype=np.int64)
    bad = _to_units(values, scale, _I64_MIN if nan_value is None else nan_value, out)
    if bad >= 0:
        raise ReconstructionError(
            f"{what}: {float(values[bad])!r} is not exact at {scale} decimals"
        )
    return out


def decimal_string(value: int, scale: int) -> str:
    """Integer units at ``scale`` -> plain decimal text (6183763, 2 -> "61837.63")."""
    return f"{Decimal(int(value)).scaleb(-scale):f}"
