"""Classification metrics that do not hide the rare classes: from one confusion matrix.

Plain top-1 rewards a model that ignores small classes. Balanced accuracy (mean per-class
recall), macro-F1 and the worst class's recall show what happens to them. Computed with numpy
from the confusion matrix instead of scikit-learn's functions, which would rebuild it once per
metric on every validation pass; the tests check each against scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(pred: np.ndarray, labels: np.ndarray,
                           num_classes: int) -> dict[str, Any]:
    """Top-1, balanced accuracy, macro-F1, per-class and worst-class recall.

    Recall is averaged over the classes present in `labels` (scikit-learn's
    `balanced_accuracy_score`); F1 over all `num_classes`, 0 where undefined
    (`f1_score(average="macro", labels=range(num_classes), zero_division=0)`).
    `per_class_recall` holds None for classes absent from `labels`.
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    confusion = np.bincount(labels * num_classes + pred,
                            minlength=num_classes * num_classes).reshape(num_classes, -1)
    true_pos = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = support > 0
    recall = np.divide(true_pos, support, out=np.zeros(num_classes), where=present)
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
    return {
        "top1": float(true_pos.sum() / max(len(labels), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1.mean()),
        "worst_class_recall": float(recall[present].min()) if present.any() else 0.0,
        "per_class_recall": [float(r) if p else None for r, p in zip(recall, present,
                                                                     strict=True)],
    }
