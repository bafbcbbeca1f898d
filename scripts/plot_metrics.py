#!/usr/bin/env python3
"""Plot the loss and accuracy curves of a `shardprop train --metrics FILE.jsonl` run into a PNG.

usage: plot_metrics.py METRICS.jsonl OUT.png [--title TEXT]

Training loss/accuracy from the "step" events (over the steps since the previous line), and
per-epoch training and validation loss/accuracy from the "epoch" events.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("out")
    ap.add_argument("--title", default="shardprop training")
    a = ap.parse_args()
    steps, epochs = [], []
    with open(a.metrics) as f:
        for n, line in enumerate(f, 1):
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{a.metrics}:{n}: not JSON: {e}")
            if d.get("event") == "step":
                steps.append(d)
            elif d.get("event") == "epoch":
                epochs.append(d)
    if not steps and not epochs:
        sys.exit(f"{a.metrics}: no step or epoch events")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    if steps:
        ax1.plot([d["step"] for d in steps], [d["loss"] for d in steps], lw=0.8, alpha=0.6,
                 label="train (per log interval)")
    ex = [d["step"] for d in epochs]
    if epochs:
        ax1.plot(ex, [d["loss"] for d in epochs], "o-", label="train (epoch)")
        if any(d.get("val_loss") is not None for d in epochs):
            ax1.plot(ex, [d["val_loss"] for d in epochs], "s-", label="validation")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.grid(alpha=0.3)
    ax1.legend()
    if steps and steps[0].get("accuracy") is not None:
        ax2.plot([d["step"] for d in steps], [d["accuracy"] for d in steps], lw=0.8, alpha=0.6,
                 label="train (per log interval)")
    if epochs and epochs[0].get("accuracy") is not None:
        ax2.plot(ex, [d["accuracy"] for d in epochs], "o-", label="train (epoch)")
        if any(d.get("val_accuracy") is not None for d in epochs):
            ax2.plot(ex, [d["val_accuracy"] for d in epochs], "s-", label="validation")
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy")
    ax2.grid(alpha=0.3)
    ax2.legend()
    fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
