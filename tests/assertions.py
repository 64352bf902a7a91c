"""Assertion helpers: bit-level comparison of arrays, with failure messages that point at an element."""

from __future__ import annotations

import numpy as np

from conformance.ulp import real_components

_UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits(array: np.ndarray) -> np.ndarray:
    """The IEEE encodings of the real scalars of ``array``, as unsigned integers."""
    components = real_components(array)
    return components.view(_UNSIGNED[components.dtype.itemsize])


def same_bits(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per real scalar: identical encodings, or both NaN (NaN payloads are not modelled)."""
    a, e = real_components(actual), real_components(expected)
    return (bits(actual) == bits(expected)) | (np.isnan(a) & np.isnan(e))


def assert_same_bits(actual: np.ndarray, expected: np.ndarray, what: str = "array") -> None:
    """``actual`` and ``expected`` agree in dtype, shape and every bit (any NaN matches any NaN)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    agree = same_bits(actual, expected)
    if agree.all():
        return
    first = int(np.argmin(agree))
    a, e = real_components(actual)[first], real_components(expected)[first]
    a_bits, e_bits = bits(actual)[first], bits(expected)[first]
    raise AssertionError(
        f"{what}: {int((~agree).sum())} of {agree.size} real scalars differ; first at flat "
        f"component {first}: got {a!r} (0x{int(a_bits):x}), expected {e!r} (0x{int(e_bits):x})"
    )
