#!/usr/bin/env python3
"""Plot a `shardprop train --metrics FILE.jsonl` run into a PNG.

usage: plot_metrics.py METRICS.jsonl -o curves.png [--title TEXT]

Panels: loss and accuracy (training and validation) against epochs, with the training values of
the step events in between; throughput (samples/s) and the fraction of gradient communication
hidden behind backward, per epoch.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    steps, epochs = [], []
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
    return steps, epochs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("-o", "--out", required=True, help="the PNG to write")
    ap.add_argument("--title", default="shardprop training")
    a = ap.parse_args()
    steps, epochs = load(a.metrics)
    if not epochs and not steps:
        sys.exit(f"{a.metrics}: no step or epoch events")
    # steps per epoch, to put step events on the epoch axis
    spe = epochs[0]["step"] / epochs[0]["epoch"] if epochs and epochs[0]["epoch"] else None
    sx = [d["step"] / spe for d in steps] if spe else [d["step"] for d in steps]
    ex = [d["epoch"] for d in epochs]
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
