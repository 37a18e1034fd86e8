"""Device selection happens in one place; the CUDA path is chosen correctly without a GPU."""

import pytest
import torch

from thaw import modeling
from thaw.errors import UserError
from thaw.modeling import autocast_dtype, length_sorted_batches, select_device


def test_auto_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("THAW_PRECISION", raising=False)
    assert select_device("auto").type == "cuda"
    assert autocast_dtype(torch.device("cuda")) == torch.bfloat16


def test_auto_falls_back_to_cpu_without_autocast(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("THAW_PRECISION", raising=False)
    monkeypatch.setattr(modeling, "cpu_has_fast_bf16", lambda: False)
    assert select_device("auto").type == "cpu"
    assert autocast_dtype(torch.device("cpu")) is None
    assert modeling.numeric_precision(torch.device("cpu")) == "cpu-fp32"


def test_cpu_with_native_bf16_autocasts_unless_told_fp32(monkeypatch):
    monkeypatch.delenv("THAW_PRECISION", raising=False)
    monkeypatch.setattr(modeling, "cpu_has_fast_bf16", lambda: True)
    assert autocast_dtype(torch.device("cpu")) == torch.bfloat16
    assert modeling.numeric_precision(torch.device("cpu")) == "cpu-bf16-autocast"
    monkeypatch.setenv("THAW_PRECISION", "fp32")
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cuda")) is None
    monkeypatch.setenv("THAW_PRECISION", "half")
    with pytest.raises(UserError, match="THAW_PRECISION='half'"):
        autocast_dtype(torch.device("cpu"))


def test_bf16_is_read_from_the_cpu_flags():
    assert modeling.cpu_has_fast_bf16("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert modeling.cpu_has_fast_bf16("flags: fpu amx_bf16 amx_tile\n")
    assert not modeling.cpu_has_fast_bf16("flags: fpu sse avx2 avx512f\n")
    assert not modeling.cpu_has_fast_bf16("")


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
