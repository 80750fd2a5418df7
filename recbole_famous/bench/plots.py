"""Matplotlib figures of the benchmark and the analyses, each titled and labelled to read without the code.

Every function takes plain numbers (no models) and writes one PNG; the Agg backend is used (no display).
"""

from __future__ import annotations

import math
import os
import textwrap


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(ax, title: str) -> None:
    ax.set_title("\n".join(textwrap.wrap(title, 55, break_on_hyphens=False)) if "\n" not in title else title,
                 fontsize=10)


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))  # room for the note line at the bottom
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def bars(values: dict, path: str, title: str, ylabel: str, errors: dict | None = None, note: str = "",
         highlight: str | None = None) -> str:
    """One bar per label (``values``: label -> number), optional error bars; ``highlight`` drawn in another colour."""
    plt = _plt()
    labels = list(values)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(labels) + 2.0), 4.0))
    heights = [values[k] for k in labels]
    yerr = [0 if errors is None or errors.get(k) is None or math.isnan(errors[k]) else errors[k] for k in labels]
    colours = ["tab:red" if k == highlight else "tab:blue" for k in labels]
    ax.bar(range(len(labels)), heights, yerr=yerr if errors else None, color=colours, capsize=3)
    for i, h in enumerate(heights):
        if not math.isnan(h):
            ax.text(i, h, f"{h:.4g}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)))
    tilt = len(labels) > 4 or max(len(k) for k in labels) > 10
    ax.set_xticklabels(labels, rotation=25 if tilt else 0, ha="right" if tilt else "center", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.12)
    _title(ax, title)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    return _save(fig, path)


def frequency_users(counts: dict, path: str, dataset: str, note: str = "") -> str:
    """The paper's Figure 1: users per frequency component that ranks their ground-truth item highest."""
    total = sum(counts.values()) or 1.0
    return bars({k: v for k, v in counts.items()}, path,
                f"{dataset}: users driven by each frequency component\n(SASRec representations, "
                f"{total:,.0f} test users)", "users", note=note)


def filter_amplitudes(curves: dict, path: str, title: str, note: str = "") -> str:
    """The paper's Figure 2: learned filter amplitude per frequency bin, one line per expert / encoder.

    ``curves``: label -> amplitudes over the rFFT bins 0 (lowest frequency) .. n//2 (highest).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for label, amp in curves.items():
        ax.plot(range(len(amp)), amp, marker="o", markersize=2.5, label=label)
    ax.set_xlabel("frequency bin (0 = lowest, right = highest)")
    ax.set_ylabel("mean filter amplitude |Q|")
    _title(ax, title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    return _save(fig, path)


def expert_share(share: dict, path: str, title: str, note: str = "") -> str:
    """Share of test users served (top-1) by each expert."""
    return bars({k: 100.0 * v for k, v in share.items()}, path, title, "users routed (%)", note=note)


def learning_curves(curves: dict, path: str, title: str, ylabel: str, note: str = "") -> str:
    """One line per label: ``curves[label] = {"epochs": [...], "scores": [...], "best_epoch": int | None,
    "dashed": bool}`` (dashed: a run still going); a dot marks the best epoch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for label, c in curves.items():
        (line,) = ax.plot(c["epochs"], c["scores"], linestyle="--" if c.get("dashed") else "-", linewidth=1.4,
                          label=label)
        best = c.get("best_epoch")
        if best is not None and best in c["epochs"]:
            ax.plot([best], [c["scores"][c["epochs"].index(best)]], "o", color=line.get_color(), markersize=5)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0-based)")
    ax.set_ylabel(ylabel)
    _title(ax, title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    return _save(fig, path)
