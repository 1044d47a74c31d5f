"""Coding text columns as small integers, a chunk at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batch.coding import categorical, factorize


def test_codes_number_values_in_order_of_appearance_across_chunks(monkeypatch):
    monkeypatch.setattr("batch.coding.CHUNK", 3)
    values = ["b", "a", "b", "c", "a", "d", "b"]

    codes, uniques = factorize(values)

    assert uniques == ["b", "a", "c", "d"]
    assert [uniques[code] for code in codes] == values
    assert codes.dtype == np.int32


def test_no_values_no_codes():
    codes, uniques = factorize([])
    assert len(codes) == 0 and uniques == []


def test_a_missing_value_is_refused():
    with pytest.raises(ValueError, match="missing"):
        factorize(["a", None])


def test_categorical_keeps_the_index_and_the_values():
    values = pd.Series(["x", "", "x"], index=[5, 7, 9])

    coded = categorical(values)

    assert isinstance(coded.dtype, pd.CategoricalDtype)
    assert list(coded.cat.categories) == ["x", ""]
    assert coded.to_dict() == {5: "x", 7: "", 9: "x"}
