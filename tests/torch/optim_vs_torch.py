#!/usr/bin/python3
"""Compare shardprop's optimizers, schedules and clipping with PyTorch (an independent reference).

Usage: optim_vs_torch.py PATH/TO/test_optim

For each case, `test_optim --dump key=value...` prints the initial parameters, then per step the
raw gradient, the learning rate (double, and as the float the optimizer used), the gradient norm
(when clipping) and the parameters after the update, and at the end the optimizer states and
step count. This script replays the same gradients through torch.optim (single-tensor path,
float32) and checks:

  * learning rates: vs the closed-form formulas (double) at 1e-12 relative, and vs
    torch.optim.lr_scheduler (LinearLR for the warmup, then StepLR / CosineAnnealingLR) at 1e-9;
  * gradient norms: vs torch.nn.utils.clip_grad_norm_ (float32) at 1e-6 relative;
  * parameters after every step and the final states (by their state_dict names):
    max |c - torch| / max(max |torch|, 1e-3) <= 1e-6 (states: floor 1e-12).

Hyperparameters are given to torch as the float32 values the C code holds (the C config is
float), and the learning rate as float32(lr), because sp_optim_step takes lr as a float.
torch must be importable: when it is not, this test FAILS (CI installs python3-torch).
"""
import math
import subprocess
import sys

try:
    import torch
except ImportError as e:  # not a skip: the reference check must run in CI
    print(f"FAIL: cannot import torch ({e}); install python3-torch (Debian) to run this test")
    sys.exit(1)

TOL = 1e-6
LR_TOL = 1e-12
SCHED_TOL = 1e-9

CASES = [
    dict(opt="sgd", momentum=0.9, nesterov=1, wd=0.01, sched="step", base_lr=0.1, warmup=3,
         step_every=5, gamma=0.5),
    dict(opt="sgd", momentum=0.9, nesterov=0, wd=0.01, sched="cosine", base_lr=0.1, warmup=4,
         total=15, min_lr=0.001),
    dict(opt="sgd", momentum=0.0, nesterov=0, wd=0.0, sched="constant", base_lr=0.05, warmup=0),
    dict(opt="adam", wd=0.01, sched="cosine", base_lr=0.01, warmup=3, total=16, min_lr=1e-4),
    dict(opt="adam", wd=0.0, beta1=0.8, beta2=0.99, eps=1e-6, sched="step", base_lr=0.01,
         warmup=2, step_every=3, gamma=0.7, max_norm=0.5),
    dict(opt="adamw", wd=0.05, sched="cosine", base_lr=0.01, warmup=5, total=18, min_lr=0.0),
    dict(opt="adamw", wd=0.1, beta1=0.85, beta2=0.995, eps=1e-7, sched="step", base_lr=0.003,
         warmup=4, step_every=4, gamma=0.5, max_norm=1.0),
]
STEPS, N = 20, 13


def f32(x):
    """The float32 value of x, as a Python float."""
    return torch.tensor(x, dtype=torch.float32).item()


def lr_formula(c, step):
    base, w = c["base_lr"], c.get("warmup", 0)
    if step < w:
        return base * (step + 1) / w
    s = step - w
    if c["sched"] == "constant":
        return base
    if c["sched"] == "step":
        return base * c["gamma"] ** (s // c["step_every"])
    span = c["total"] - w
    if s >= span:
        return c["min_lr"]
    return c["min_lr"] + (base - c["min_lr"]) * (1 + math.cos(math.pi * s / span)) / 2


def lr_torch_schedulers(c, steps):
    """The same schedule from torch.optim.lr_scheduler: {step: lr} where torch has one."""
    out = {}
    base, w = c["base_lr"], c.get("warmup", 0)
    dummy = torch.nn.Parameter(torch.zeros(1))
    if w >= 2:
        o = torch.optim.SGD([dummy], lr=base)
        sch = torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0 / w, end_factor=1.0,
                                                total_iters=w - 1)
        for k in range(w):
            out[k] = sch.get_last_lr()[0]
            o.step()
            sch.step()
    o = torch.optim.SGD([dummy], lr=base)
    if c["sched"] == "step":
        sch = torch.optim.lr_scheduler.StepLR(o, step_size=c["step_every"], gamma=c["gamma"])
        last = steps
    elif c["sched"] == "cosine":
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=c["total"] - w,
                                                         eta_min=c["min_lr"])
        last = c["total"]  # torch's cosine rises again past T_max; shardprop clamps
    else:
        sch = torch.optim.lr_scheduler.ConstantLR(o, factor=1.0, total_iters=0)
        last = steps
    for k in range(w, min(steps, last + 1)):
        out[k] = sch.get_last_lr()[0]
        o.step()
        sch.step()
    return out


def rel(a, b, floor):
    scale = max(floor, max(abs(x) for x in b))
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def parse(text):
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    init = [float(x) for x in lines[0][1:]]
    steps, states, count, i = [], {}, None, 1
    while i < len(lines):
        tag = lines[i][0]
        if tag == "grad":
            grad = [float(x) for x in lines[i][1:]]
            lr_d, lr_f, norm = (float(x) for x in lines[i + 1][1:4])
            param = [float(x) for x in lines[i + 2][1:]]
            steps.append(dict(grad=grad, lr=lr_d, lr_f=lr_f, norm=norm, param=param))
            i += 3
        elif tag == "state":
            states[lines[i][1]] = [float(x) for x in lines[i][2:]]
            i += 1
        elif tag == "count":
            count = int(lines[i][1])
            i += 1
        else:
            raise ValueError(f"unexpected line {lines[i]}")
    return init, steps, states, count


def run_case(exe, idx, c):
    args = [exe, "--dump", f"steps={STEPS}", f"n={N}", f"seed={idx + 1}"]
    args += [f"{k}={v}" for k, v in c.items()]
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        return [f"driver failed ({res.returncode}): {res.stderr.strip()}"]
    init, steps, states, count = parse(res.stdout)
    errors, worst = [], 0.0
    name = " ".join(f"{k}={v}" for k, v in c.items())

    p = torch.nn.Parameter(torch.tensor(init, dtype=torch.float32))
    wd = f32(c.get("wd", 0.0))
    if c["opt"] == "sgd":
        opt = torch.optim.SGD([p], lr=0.1, momentum=f32(c.get("momentum", 0.0)),
                              nesterov=bool(c.get("nesterov", 0)), weight_decay=wd)
    else:
        cls = torch.optim.Adam if c["opt"] == "adam" else torch.optim.AdamW
        opt = cls([p], lr=0.1, betas=(f32(c.get("beta1", 0.9)), f32(c.get("beta2", 0.999))),
                  eps=f32(c.get("eps", 1e-8)), weight_decay=wd)

    sched = lr_torch_schedulers(c, STEPS)
    for k, s in enumerate(steps):
        want = lr_formula(c, k)
        if abs(s["lr"] - want) > LR_TOL * want:
            errors.append(f"step {k}: lr {s['lr']!r}, formula {want!r}")
        if k in sched and abs(s["lr"] - sched[k]) > SCHED_TOL * want:
            errors.append(f"step {k}: lr {s['lr']!r}, torch scheduler {sched[k]!r}")
        if f32(s["lr_f"]) != f32(s["lr"]):
            errors.append(f"step {k}: float lr {s['lr_f']!r} is not float32({s['lr']!r})")
        p.grad = torch.tensor(s["grad"], dtype=torch.float32)
        if c.get("max_norm"):
            tn = torch.nn.utils.clip_grad_norm_([p], c["max_norm"]).item()
            if abs(tn - s["norm"]) > TOL * tn:
                errors.append(f"step {k}: grad norm {s['norm']!r}, torch {tn!r}")
        for group in opt.param_groups:
            group["lr"] = f32(want)
        opt.step()
        e = rel(s["param"], p.detach().tolist(), 1e-3)
        worst = max(worst, e)
        if not e <= TOL:
            errors.append(f"step {k}: params relerr {e:.3g} > {TOL}")

    st = opt.state[p]
    torch_states = {k: v.tolist() for k, v in st.items() if k in
                    ("momentum_buffer", "exp_avg", "exp_avg_sq") and v is not None}
    if set(torch_states) != set(states):
        errors.append(f"state names {sorted(states)} vs torch {sorted(torch_states)}")
    for k in set(torch_states) & set(states):
        e = rel(states[k], torch_states[k], 1e-12)
        if not e <= TOL:
            errors.append(f"state {k}: relerr {e:.3g} > {TOL}")
    if count != STEPS:
        errors.append(f"step count {count}, want {STEPS}")
    if "step" in st and int(st["step"].item()) != count:
        errors.append(f"step count {count}, torch {int(st['step'].item())}")
    status = "ok" if not errors else "FAIL"
    print(f"{status:4} {name}: max params relerr {worst:.2e}")
    return [f"[{name}] {e}" for e in errors]


def main():
    if len(sys.argv) != 2:
        print("usage: optim_vs_torch.py PATH/TO/test_optim")
        return 2
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}; tolerance {TOL} relative, {STEPS} steps, n = {N}")
    errors = []
    for idx, c in enumerate(CASES):
        errors += run_case(sys.argv[1], idx, c)
    for e in errors:
        print("FAIL", e)
    print(f"optim_vs_torch: {len(CASES)} cases, {len(errors)} failures")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
