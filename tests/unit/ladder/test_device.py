"""Device selection happens in one place; the CUDA path is chosen correctly without a GPU."""

import pytest
import torch

from thaw.errors import UserError
from thaw.modeling import autocast_dtype, length_sorted_batches, select_device


def test_auto_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"
    assert autocast_dtype(torch.device("cuda")) == torch.bfloat16


def test_auto_falls_back_to_cpu_without_autocast(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"
    assert autocast_dtype(torch.device("cpu")) is None


def test_asking_for_cuda_without_it_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        select_device("cuda")
    assert select_device("cpu").type == "cpu"


def test_length_sorted_batches_cover_every_index_once():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [lengths[i] for i in batches[0]] == [9, 8, 7]
