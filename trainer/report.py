"""Window-level metrics (pure numpy) and the training report: PNG plots and a JSON of test metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic, ties averaged); nan with one class only."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float,
                   kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, AUROC, confusion counts at `threshold` (score >= threshold
    means snap), and the false-positive rate of each kind of negative window."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    pred = scores >= threshold
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    tn = int(np.sum(~pred & (labels == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out: dict[str, Any] = {
        "threshold": round(float(threshold), 4), "windows": int(len(labels)), "positives": int(labels.sum()),
        "accuracy": round((tp + tn) / max(1, len(labels)), 4), "precision": round(precision, 4),
        "recall": round(recall, 4), "f1": round(f1, 4), "auroc": round(auroc(scores, labels), 4),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }
    if kinds is not None:
        kinds_arr = np.asarray(list(kinds))
        out["false_positive_rate_by_kind"] = {
            k: round(float(np.mean(pred[kinds_arr == k])), 4)
            for k in sorted(set(kinds_arr[labels == 0].tolist()))
        }
    return out


def calibrate_threshold(scores: np.ndarray, labels: np.ndarray, beta: float = 1.0,
                        lo: float = 0.05, hi: float = 0.95) -> float:
    """The threshold maximising F-beta on (validation) scores; beta < 1 favours precision.
    Placed halfway between the two neighbouring scores, and kept inside [lo, hi]."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    if labels.sum() == 0 or labels.sum() == len(labels):
        return 0.5
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    b2 = beta * beta
    f = (1 + b2) * precision * recall / np.maximum(b2 * precision + recall, 1e-12)
    # only cut between distinct scores
    valid = np.r_[s[1:] < s[:-1], True]
    f = np.where(valid, f, -1)
    k = int(np.argmax(f))
    t = (s[k] + s[k + 1]) / 2 if k + 1 < len(s) else s[k] / 2
    return float(min(max(t, lo), hi))


def pr_curve(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(int)
    prec, rec = [], []
    for t in thresholds:
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        prec.append(tp / max(1, pred.sum()) if pred.sum() else 1.0)
        rec.append(tp / max(1, labels.sum()))
    return np.array(prec), np.array(rec)


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    tmp = p.with_name(f".{p.name}.part")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, p)
    return p


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: list[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """Loss and metrics per epoch (train and val)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    for key in ("train_loss", "val_loss"):
        axes[0].plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("BCE loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for key in ("val_accuracy", "val_precision", "val_recall", "val_f1", "val_auroc", "train_f1"):
        axes[1].plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=key)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0.5, 1.005)
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.suptitle("snap-train: loss and metrics per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion(confusion: dict[str, int], path: str | os.PathLike[str], title: str = "test windows") -> Path:
    plt = _plt()
    m = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(m, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="black", fontsize=13)
    ax.set_xticks([0, 1], ["no snap", "snap"])
    ax.set_yticks([0, 1], ["no snap", "snap"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_pr_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float,
                      path: str | os.PathLike[str], title: str = "validation windows") -> Path:
    plt = _plt()
    ts = np.linspace(0.01, 0.99, 99)
    prec, rec = pr_curve(scores, labels, ts)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ts, prec, label="precision")
    ax.plot(ts, rec, label="recall")
    ax.axvline(threshold, color="gray", ls="--", label=f"calibrated threshold {threshold:.2f}")
    ax.set_xlabel("threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"precision / recall against threshold ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
