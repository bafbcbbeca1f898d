"""The skeleton's input from the trainer's plan and the measured layer times.

    plan.py DRYRUN.json LAYER_TIMES.json OUT.txt [HOST_SPEED_FLOPS [COMPUTE_SCALE]]

DRYRUN.json is `shardprop train --dry-run --json` (the bucket plan: "buckets", "bucket_mb",
"params", "layers" with "param_offset"); LAYER_TIMES.json is scale_layer_times' output for the
same spec. The two must describe the same model (layer count, parameter offsets). COMPUTE_SCALE
multiplies every compute time (e.g. 2 for 4 ranks sharing 2 cores)."""
import json
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    plan = json.load(open(sys.argv[1]))
    times = json.load(open(sys.argv[2]))
    speed = float(sys.argv[4]) if len(sys.argv) > 4 else 100e9
    k = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    layers, tl = plan["layers"], times["layers"]
    if len(layers) != len(tl) or plan["params"] != times["params"]:
        sys.exit(f"plan.py: {sys.argv[1]} and {sys.argv[2]} describe different models")
    out = [f"params {plan['params']} bucket_bytes {int(plan['bucket_mb'] * 1048576)} "
           f"host_speed {speed:g}", f"layers {len(layers)}"]
    for L, T in zip(layers, tl):
        w_off = L["param_offset"] if L["params"] > 0 else -1
        if w_off != T["param_offset"]:
            sys.exit(f"plan.py: layer {L['index']}: parameter offsets differ")
        out.append(f"{L['index']} {k * T['forward_s']:.9g} {k * T['backward_s']:.9g} {w_off}")
    out.append(f"update {k * times['update_s']:.9g}")
    out.append(f"buckets {len(plan['buckets'])}")
    for b in plan["buckets"]:
        out.append(f"{b['index']} {b['offset']} {b['floats']}")
    open(sys.argv[3], "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
