"""Study: how many full-size loss evaluations Gatys style transfer needs, optimiser by optimiser.

``benchmarks/nst.py`` measures time. This study measures the other factor of the 10x target of
issue #2: iteration efficiency. All variants minimise the same fp32 loss (impasto's defaults:
content ``relu4_2``, style ``relu1_1``..``relu5_1``, weights 5 / 100 / 1e-3) on
``tubingen.jpg`` x ``starry_night.jpg`` at one scale, from the content image, in one process:

* ``lbfgs``: impasto's :class:`~impasto.style.optim.ImageLBFGS`, history 30 (the default and
  the baseline of ``nst.py``); the reference;
* ``lbfgs-h100``: history 100, as neural-style's L-BFGS keeps (four times the memory: 630 MB of
  history at 512 px);
* ``lbfgs-pyramid``: L-BFGS whose initial inverse Hessian is a Laplacian-pyramid
  preconditioner (``ImageLBFGS(precondition=...)``), ``P = I + sum_k w^k U_k D_k`` (``D_k`` averages 2^k x 2^k blocks, ``U_k``
  repeats them back), so that coarse image structure takes larger steps than pixel noise;
* ``lbfgs-warm``: the content weight four times higher for the first 30 iterations, then the
  true weight (a continuation that keeps more of the content while the style settles in);
* ``lbfgs-colour``: L-BFGS preconditioned by the content's colour covariance ``C`` (trace 3, plus
  0.05 I), applied to each pixel's RGB: the same as optimising a decorrelated colour
  parameterisation ``x = C^{1/2} z`` (Mordvintsev et al. 2018, "Differentiable Image
  Parameterizations"), so directions of high colour variance take larger steps;
* ``lbfgs-colorinit``: L-BFGS from the content recoloured to the style's colour mean and
  covariance (:func:`impasto.style.color.match_color`), so the shallow Gram matrices start close;
* ``adam``: torch's Adam with impasto's default learning rate for it (0.02), pixels clamped.

For each variant: the internal loss every 10 iterations, the loss evaluations spent, the loss of
the saved 8-bit output, and how many evaluations it needed to reach the reference's final loss
(fewer = more efficient; ``nst_ceiling.py`` measures how many fewer the target of #2 would
need on this CPU: 5.4x at 512 px).

    OMP_NUM_THREADS=1 python benchmarks/nst_optim.py            # 256 px, 300 iterations: ~35 min
    python benchmarks/nst_optim.py --quick                       # 128 px, 30 iterations

Prints a table and writes benchmarks/out/nst_optim.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from nst import OUT, Evaluator, time_to_reach
from torch import Tensor


def pyramid_preconditioner(shape: torch.Size, levels: int = 4, w: float = 2.0):
    """``g -> g + sum_k w^k U_k D_k g``: symmetric positive definite, applied to a flat vector."""

    def apply(g: Tensor) -> Tensor:
        x = g.view(shape)
        out = x.clone()
        for k in range(1, levels + 1):
            f = 2**k
            h, wd = shape[-2] // f * f, shape[-1] // f * f
            if h == 0 or wd == 0:
                break
            low = F.avg_pool2d(x[..., :h, :wd], f)
            out[..., :h, :wd] += (w**k) * F.interpolate(low, scale_factor=f, mode="nearest")
        return out.reshape(-1)

    return apply


def colour_preconditioner(image: Tensor):
    """``g -> C g`` per pixel, ``C`` the colour covariance of ``image`` ``(1, 3, H, W)``
    (trace 3, plus ``0.05 I`` so that no colour direction is frozen)."""
    c = torch.cov(image.reshape(3, -1).float())
    c = c / c.trace() * 3 + 0.05 * torch.eye(3)

    def apply(g: Tensor) -> Tensor:
        return torch.einsum("ij,jn->in", c, g.view(3, -1)).reshape(-1)

    return apply


VARIANTS = ("lbfgs", "lbfgs-h100", "lbfgs-pyramid", "lbfgs-warm", "lbfgs-colour",
            "lbfgs-colorinit", "adam")


def run_variant(name: str, loss_fn, content: Tensor, style: Tensor, iterations: int,
                cfg) -> dict:
    from impasto.style.color import match_color
    from impasto.style.optim import ImageLBFGS

    start = match_color(content, style) if name == "lbfgs-colorinit" else content
    image = start.clone().contiguous().requires_grad_(True)
    evaluations = 0

    def closure() -> Tensor:
        nonlocal evaluations
        evaluations += 1
        image.grad = None
        total, _ = loss_fn(image)
        total.backward()
        return total

    if name == "adam":
        opt = torch.optim.Adam([image], lr=0.02)
    elif name == "lbfgs-pyramid":
        opt = ImageLBFGS(image, history=cfg.lbfgs_history, bounds=(0.0, 1.0),
                         precondition=pyramid_preconditioner(image.shape))
    elif name == "lbfgs-colour":
        opt = ImageLBFGS(image, history=cfg.lbfgs_history, bounds=(0.0, 1.0),
                         precondition=colour_preconditioner(content))
    else:
        history = 100 if name == "lbfgs-h100" else cfg.lbfgs_history
        opt = ImageLBFGS(image, history=history, bounds=(0.0, 1.0))
    warm = 30 if name == "lbfgs-warm" else 0
    loss_fn.content_weight = cfg.content_weight * (4.0 if warm else 1.0)
    trace = []
    t0 = time.perf_counter()
    for i in range(1, iterations + 1):
        if warm and i == warm + 1:
            loss_fn.content_weight = cfg.content_weight
            opt.reset(keep_history=False)  # the objective changed
        if name == "adam":
            loss = float(opt.step(closure).detach())
            with torch.no_grad():
                image.clamp_(0, 1)
        else:
            loss = opt.step(closure)
        if i % 10 == 0 or i == 1:
            if warm and i <= warm:  # report the true objective while the weight is raised
                with torch.no_grad():
                    loss_fn.content_weight = cfg.content_weight
                    loss = float(loss_fn(image)[0])
                    loss_fn.content_weight = cfg.content_weight * 4.0
            # (seconds, iteration, loss, evaluations): time_to_reach reads index 0 and 2.
            trace.append((time.perf_counter() - t0, i, loss, evaluations))
    loss_fn.content_weight = cfg.content_weight
    return {"name": name, "trace": trace, "evaluations": evaluations,
            "seconds": time.perf_counter() - t0, "image": image.detach().clamp(0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=VARIANTS, action="append", default=None)
    ap.add_argument("--quick", action="store_true", help="128 px, 30 iterations")
    ap.add_argument("--json", type=Path, default=OUT / "nst_optim.json")
    args = ap.parse_args()
    if args.quick:
        args.size, args.iterations = 128, 30
    torch.set_num_threads(args.threads)

    evaluate = Evaluator(args.size)  # the loss all variants minimise, and the 8-bit score
    cfg, loss_fn, content = evaluate.cfg, evaluate.loss, evaluate.content

    names = ["lbfgs"] + [n for n in (args.only or VARIANTS) if n != "lbfgs"]
    runs = {}
    for name in names:
        rec = run_variant(name, loss_fn, content, evaluate.style, args.iterations, cfg)
        rec["saved_loss"] = evaluate(rec.pop("image"))["total_loss"]
        runs[name] = rec
        print(f"{name}: {rec['trace'][-1][2]:.4g} after {args.iterations} iterations "
              f"({rec['seconds']:.0f} s)", flush=True)

    ref = runs["lbfgs"]
    target = ref["trace"][-1][2]
    print(f"\nGatys at {args.size} px, fp32, {args.threads} thread(s); reference: lbfgs after "
          f"{args.iterations} iterations, loss {target:.4g}")
    print(f"{'variant':<14} {'loss@100':>10} {'final':>10} {'saved 8-bit':>12} "
          f"{'evaluations':>12} {'evals to ref':>13} {'efficiency':>11}")
    for name, r in runs.items():
        at100 = next((p[2] for p in r["trace"] if p[1] == 100), float("nan"))
        # Evaluations (trace index 3) needed to reach the reference's final loss.
        needed = time_to_reach([(p[3], p[1], p[2]) for p in r["trace"]], target)
        r["evaluations_to_reference"] = needed
        r["efficiency"] = None if needed is None else ref["evaluations"] / needed
        eff = "-" if needed is None else f"{r['efficiency']:.2f}x"
        print(f"{name:<14} {at100:>10.4g} {r['trace'][-1][2]:>10.4g} {r['saved_loss']:>12.4g} "
              f"{r['evaluations']:>12} {('-' if needed is None else f'{needed:.0f}'):>13} "
              f"{eff:>11}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size": args.size, "iterations": args.iterations,
                                     "threads": args.threads, "reference_loss": target,
                                     "runs": runs}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
