"""The test confusion matrix stays readable and bounded from 2 classes to 150."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("classes", [2, 20, 150])
def test_the_confusion_matrix_keeps_labels_apart_and_its_size_bounded(tmp_path, classes):
    from PIL import Image

    from tasks.evaluation.scoring import confusion_inches, plot_confusion

    labels = [f"intent_{i:03d}" for i in range(classes)]
    y_true = [label for label in labels for _ in range(2)]  # 2 rows a class
    y_pred = y_true[1:] + y_true[:1]  # one wrong in every class
    png = plot_confusion(y_true, y_pred, labels, tmp_path / "cm.png")
    width, height = Image.open(png).size
    inches = confusion_inches(classes)
    assert width == height == round(inches * 110)
    assert inches * 72 / classes >= 17 or inches == 5.0  # room for an 8-point label per class
    assert inches <= 36
