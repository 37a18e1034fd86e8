"""One core count for every pool and thread setting: the cores this process may run on."""

import os

import pytest

from thaw.modeling import configure_threads, usable_cores


@pytest.mark.parametrize("allowed", [1, 3, 16])
def test_the_cpu_affinity_is_the_count_where_the_os_reports_one(monkeypatch, allowed):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(allowed)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's, not this process's
    assert usable_cores() == allowed


def test_without_an_affinity_call_every_core_and_never_none(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "undetermined", as the docs allow
    assert usable_cores() == 1


def test_torch_gets_the_usable_cores_or_the_count_asked_for(monkeypatch):
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    try:
        configure_threads()
        assert torch.get_num_threads() == 1
        configure_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
