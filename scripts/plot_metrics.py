#!/usr/bin/env python3
"""Plot a `shardprop train --metrics FILE.jsonl` run into a PNG.

usage: plot_metrics.py METRICS.jsonl -o curves.png [--title TEXT]

Panels: loss and accuracy (training and validation) against epochs, with the training values of
the step events in between; throughput (samples/s) and the fraction of gradient communication
hidden behind backward, per epoch.

When the file holds "layer_stats" records (`shardprop train --layer-stats`), a second row shows,
one line per layer with parameters and on a log scale: the norm of the error signal arriving at
the layer, of its weight gradient, of its weights, and the update/weight ratio of the step.
Vanishing gradients show as lines falling apart towards layer 0, exploding ones as lines
shooting up; update ratios far below ~1e-3 mean a layer barely learns.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    steps, epochs, layers = [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            if d.get("event") == "step":
                steps.append(d)
            elif d.get("event") == "epoch":
                epochs.append(d)
            elif d.get("event") == "layer_stats":
                layers.append(d)
    return steps, epochs, layers


LAYER_PANELS = (("error_norm", "error signal arriving ||dL/d out||"),
                ("weight_grad_norm", "weight gradient ||dL/dW||"),
                ("weight_norm", "weights ||W||"),
                ("update_ratio", "update / weight ||dW|| / ||W||"))


def plot_layers(fig, gs, layers, spe):
    """One panel per quantity, one line per layer (log y)."""
    by_layer = {}
    for d in layers:
        by_layer.setdefault(d["layer"], []).append(d)
    cmap = plt.get_cmap("viridis")
    n = len(by_layer)
    for k, (key, title) in enumerate(LAYER_PANELS):
        ax = fig.add_subplot(gs[1, 3 * k:3 * k + 3])
        for j, (layer, recs) in enumerate(sorted(by_layer.items())):
            pts = [(d["step"] / spe if spe else d["step"], d.get(key)) for d in recs]
            pts = [(x, y) for x, y in pts if y is not None and y > 0]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", ms=3, lw=1,
                        color=cmap(j / max(n - 1, 1)), label=f"{layer} {recs[0].get('kind', '')}")
        ax.set_yscale("log")
        ax.set_xlabel("epoch" if spe else "step")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        if k == 0:
            ax.legend(title="layer", fontsize=8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("-o", "--out", required=True, help="the PNG to write")
    ap.add_argument("--title", default="shardprop training")
    a = ap.parse_args()
    steps, epochs, layers = load(a.metrics)
    if not epochs and not steps:
        sys.exit(f"{a.metrics}: no step or epoch events")
    # steps per epoch, to put step events on the epoch axis
    spe = epochs[0]["step"] / epochs[0]["epoch"] if epochs and epochs[0]["epoch"] else None
    sx = [d["step"] / spe for d in steps] if spe else [d["step"] for d in steps]
    ex = [d["epoch"] for d in epochs]
    if layers:
        fig = plt.figure(figsize=(16, 8.4))
        gs = fig.add_gridspec(2, 12)
        axes = [fig.add_subplot(gs[0, 4 * k:4 * k + 4]) for k in range(3)]
        plot_layers(fig, gs, layers, spe)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, ylabel in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        if steps and steps[0].get(key) is not None:
            ax.plot(sx, [d[key] for d in steps], lw=0.8, alpha=0.5, label="train (log interval)")
        if epochs and epochs[0].get(key) is not None:
            ax.plot(ex, [d[key] for d in epochs], "o-", label="train (epoch)")
        if any(d.get("val_" + key) is not None for d in epochs):
            ax.plot(ex, [d.get("val_" + key) for d in epochs], "s-", label="validation")
        ax.set_xlabel("epoch" if spe else "step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    ax = axes[2]
    if epochs:
        ax.plot(ex, [d["samples_per_s"] for d in epochs], "o-", color="tab:blue")
        ax.set_ylabel("samples/s", color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        hid = [d.get("comm_hidden_fraction") for d in epochs]
        if any(h is not None for h in hid):
            ax2 = ax.twinx()
            ax2.plot(ex, hid, "s--", color="tab:red")
            ax2.set_ylabel("communication hidden (fraction)", color="tab:red")
            ax2.set_ylim(0, 1.05)
    ax.set_title("throughput")
    fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
