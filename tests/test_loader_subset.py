"""Which indices a loader streams (loaders/_subset.py): the exact part, every error whole."""

import re

import numpy as np
import pytest
import torch

from proxyfast.loaders._subset import subset_indices

from _loader_data import index_proxy

N = 1200
K = 7


@pytest.fixture(scope="module")
def proxy():
    return index_proxy(N, K)


@pytest.mark.parametrize("portion", [0.0, 0.5, 0.7, 1.0])
def test_a_proxy_set_gives_its_indices_and_the_halves_of_its_split(proxy, portion):
    train, val = proxy.split(portion)
    expected = {"all": proxy.indices, "train": train, "val": val}
    for part in ("all", "train", "val"):
        indices = subset_indices(proxy, part, portion, N, "the data")
        assert indices.dtype == np.int64
        assert indices.tolist() == expected[part].tolist()


@pytest.mark.parametrize("kind", ["list", "numpy int32", "tensor"])
@pytest.mark.parametrize("portion, n_train", [(0.0, 0), (0.3, 1), (0.7, 3), (1.0, 5)])
def test_a_bare_sequence_is_split_after_floor_of_portion_times_k(kind, portion, n_train):
    given = [9, 4, 11, 0, 2]
    source = {"list": given, "numpy int32": np.array(given, dtype=np.int32), "tensor": torch.tensor(given)}[kind]
    # 0.7 * 5 = 3.5: floor gives 3, where rounding or ceil would give 4.
    parts = {part: subset_indices(source, part, portion, 12, "the data") for part in ("all", "train", "val")}
    assert parts["all"].tolist() == given
    assert parts["train"].tolist() == given[:n_train]
    assert parts["val"].tolist() == given[n_train:]
    assert all(p.dtype == np.int64 for p in parts.values())


def test_the_first_and_last_example_are_in_range_and_an_empty_proxy_is_allowed():
    assert subset_indices([0, 11], "all", 0.5, 12, "the data").tolist() == [0, 11]
    empty = subset_indices([], "all", 0.5, 12, "the data")
    assert empty.dtype == np.int64 and empty.size == 0
    assert subset_indices([], "train", 0.5, 12, "the data").size == 0


def raises(error, message):
    return pytest.raises(error, match="^" + re.escape(message) + "$")


def test_errors_name_the_argument_and_the_value(proxy):
    with raises(ValueError, "part must be one of 'all', 'train', 'val', got 'arch'"):
        subset_indices(proxy, "arch", 0.5, N, "the data")
    with raises(ValueError, "the proxy set was selected from 1,200 examples but the data (X) holds 1,199: "
                            "they are not the same data"):
        subset_indices(proxy, "all", 0.5, N - 1, "the data (X)")
    with raises(TypeError, "indices must be a 1-D sequence of integers, got float64 (2,)"):
        subset_indices([1.0, 2.0], "all", 0.5, 12, "the data")
    with raises(TypeError, "indices must be a 1-D sequence of integers, got int64 (1, 2)"):
        subset_indices([[1, 2]], "all", 0.5, 12, "the data")
    with raises(TypeError, "train_portion must be a number, got bool"):
        subset_indices([1, 2], "train", True, 12, "the data")
    with raises(TypeError, "train_portion must be a number, got str"):
        subset_indices([1, 2], "val", "0.5", 12, "the data")
    for portion in (1.5, -0.25, float("nan")):
        with raises(ValueError, f"train_portion must be in [0, 1], got {portion!r}"):
            subset_indices([1, 2], "train", portion, 12, "the data")
    # "all" does not split, so it does not read train_portion.
    assert subset_indices([1, 2], "all", 1.5, 12, "the data").tolist() == [1, 2]


def test_out_of_range_and_duplicate_indices_are_refused_naming_the_index():
    with raises(ValueError, "index 1000 is out of range for the data of 1,000 examples"):
        subset_indices([3, 1000], "all", 0.5, 1000, "the data")
    with raises(ValueError, "index -1 is out of range for the data of 1,000 examples"):
        subset_indices([-1, 3], "all", 0.5, 1000, "the data")
    # Both ends out of range: the message names the one past the end.
    with raises(ValueError, "index 1005 is out of range for the data of 1,000 examples"):
        subset_indices([-4, 1005, 7], "all", 0.5, 1000, "the data")
    with raises(ValueError, "the proxy indices contain duplicates; a proxy holds each example once"):
        subset_indices([5, 3, 5], "all", 0.5, 1000, "the data")
    # Checked on the part that is streamed: the duplicate lies in the other half.
    assert subset_indices([1, 2, 3, 3], "train", 0.5, 1000, "the data").tolist() == [1, 2]
