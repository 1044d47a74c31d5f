"""Text columns as small integer codes, for columns of a million rows with few distinct values.

pandas' factorize (and Categorical, value_counts, crosstab, which use it) sizes its hash table
by the number of values: 60 MB of memory at peak for a million (measured), whatever the
number of distinct values. `factorize` here does it a chunk at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Values hashed at a time: the hash table pandas makes for them is 3.5 MB.
CHUNK = 1 << 16


def factorize(values: pd.Series | np.ndarray) -> tuple[np.ndarray, list]:
    """`(codes, uniques)` with `uniques[codes[i]] == values[i]`, uniques in order of appearance.

    The values must not be missing (text read with na_filter off never is).
    """
    values = np.asarray(values, dtype=object)
    codes = np.empty(len(values), dtype=np.int32)
    uniques: dict = {}
    for start in range(0, len(values), CHUNK):
        chunk_codes, chunk_uniques = pd.factorize(values[start : start + CHUNK])
        if (chunk_codes < 0).any():
            raise ValueError("factorize: missing values have no code")
        numbers = [uniques.setdefault(value, len(uniques)) for value in chunk_uniques]
        codes[start : start + CHUNK] = np.asarray(numbers, dtype=np.int32).take(chunk_codes)
    return codes, list(uniques)


def categorical(values: pd.Series) -> pd.Series:
    """`values` as a Categorical, its categories in order of appearance."""
    codes, uniques = factorize(values)
    return pd.Series(
        pd.Categorical.from_codes(codes, pd.Index(uniques, dtype=object)), index=values.index
    )
