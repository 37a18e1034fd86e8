"""The approved accuracy the labelled drift alarm compares with comes from a version tag,
which anyone with edit rights may rewrite: only an accuracy is taken."""

import pytest

from tasks.monitoring.drift import recorded_accuracy
from thaw.errors import UserError


def test_a_recorded_accuracy_is_read_and_an_absent_one_is_none():
    assert recorded_accuracy("m", "3", "0.9348") == pytest.approx(0.9348)
    assert recorded_accuracy("m", "3", None) is None and recorded_accuracy("m", "3", "") is None


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-0.1", "1.5", "0.93\u00a0%", "9" * 100_000])
def test_anything_else_is_refused_in_one_line_naming_the_version_and_tag(value):
    with pytest.raises(UserError, match=r"^m version 3: its tag thaw.test_accuracy '.{0,40}' is not an accuracy$"):
        recorded_accuracy("m", "3", value)
