"""Benchmark: the ceiling on the 10x Gatys target of issue #2, from the cost of one loss evaluation.

``benchmarks/nst.py`` measures whole runs. This measures the two factors they are made of:

* **time per evaluation**: impasto's default Gatys loss (VGG19 to ``relu5_1``, content
  ``relu4_2``, five Gram matrices, TV) forward and backward to the pixels, on the benchmark's
  image (``tubingen.jpg``, 512 px longest side), in fp32 NCHW (the baseline), bf16 autocast NCHW
  (impasto's default) and bf16 NHWC (channels_last), in alternating rounds in one process; and
  the fp32 and bf16 peak of a 2048 x 2048 matrix product (what bf16 can give at best here);
* **the evaluations the target allows**: with ``benchmarks/out/nst.json`` from ``nst.py``, the
  baseline's CPU time over 10, divided by the time of one bf16 evaluation, is the number of
  full-size evaluations a run may spend and still be 10x faster (even if its coarse scales cost
  nothing). The baseline needed its 1000 iterations to reach its final loss; the ratio of the two
  is how many times fewer evaluations than L-BFGS an optimiser would need for that loss.

    OMP_NUM_THREADS=1 python benchmarks/nst_ceiling.py   # about 2 minutes
    python benchmarks/nst_ceiling.py --quick             # 128 px, one round

Prints a table and writes benchmarks/out/nst_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from gan_throughput import matmul_peak
from nst import OUT, Evaluator

LAYOUTS = {
    "fp32 NCHW (baseline)": (torch.float32, torch.contiguous_format),
    "bf16 NCHW (default)": (torch.bfloat16, torch.contiguous_format),
    "bf16 NHWC": (torch.bfloat16, torch.channels_last),
}


def evaluation_seconds(size: int, rounds: int, repeats: int = 3) -> dict[str, float]:
    """Median seconds of one loss forward + backward to the pixels, per precision and layout."""
    from impasto.device import autocast

    evaluate = Evaluator(size)
    loss_fn, content = evaluate.loss, evaluate.content
    cpu = torch.device("cpu")
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for _ in range(rounds):
        for name, (dtype, fmt) in LAYOUTS.items():
            loss_fn.encoder.to(memory_format=fmt)
            with autocast(cpu, dtype):  # the targets in the run's own precision, as a run does
                loss_fn.set_content(content)
                loss_fn.set_styles([evaluate.style])
            image = content.clone().contiguous(memory_format=fmt).requires_grad_(True)
            for k in range(repeats + 1):
                t = time.perf_counter()
                image.grad = None
                with autocast(cpu, dtype):
                    total, _ = loss_fn(image)
                total.backward()
                if k:  # the first call warms oneDNN's kernel cache
                    times[name].append(time.perf_counter() - t)
    loss_fn.encoder.to(memory_format=torch.contiguous_format)
    return {name: statistics.median(ts) for name, ts in times.items()}


def budget(nst_json: Path, size: int, bf16_seconds: float) -> dict | None:
    """What the 10x target allows, from a finished ``nst.py`` run at ``size`` (None without
    one)."""
    if not nst_json.is_file():
        return None
    data = json.loads(nst_json.read_text())
    base = data.get("runs", {}).get("baseline")
    if not base or data["size"] != size:
        return None
    iterations = base["iterations"][-1]
    allowed_cpu = base["cpu_seconds"] / 10
    allowed = allowed_cpu / bf16_seconds
    # The baseline's own loss after as many iterations as the target allows a bf16 run.
    trace = base["trace"]  # (wall s, step, loss, CPU s), every 10 iterations
    at_allowed = min(trace, key=lambda p: abs(p[1] - allowed))
    return {
        "size": data["size"],
        "baseline_cpu_seconds": base["cpu_seconds"],
        "baseline_iterations": iterations,
        "baseline_final_loss": base["total_loss"],
        "allowed_cpu_seconds": allowed_cpu,
        "allowed_bf16_evaluations": allowed,
        "baseline_loss_after_allowed": at_allowed[2],
        "efficiency_needed": iterations / allowed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="128 px, one round")
    ap.add_argument("--nst-json", type=Path, default=OUT / "nst.json")
    ap.add_argument("--json", type=Path, default=OUT / "nst_ceiling.json")
    args = ap.parse_args()
    if args.quick:
        args.size, args.rounds = 128, 1

    seconds = evaluation_seconds(args.size, args.rounds)
    peak = matmul_peak()
    fp32 = seconds["fp32 NCHW (baseline)"]
    bf16 = seconds["bf16 NCHW (default)"]
    print(f"\nGatys loss evaluation (forward + backward to the pixels), tubingen at {args.size} px, "
          f"{torch.get_num_threads()} thread(s), median of {args.rounds} rounds")
    print(f"{'precision, layout':<22} {'s / evaluation':>15} {'vs fp32':>8}")
    for name, s in seconds.items():
        print(f"{name:<22} {s:>15.3f} {fp32 / s:>7.2f}x")
    print(f"matrix product 2048^2: fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 "
          f"{peak['bf16_gflops']:.0f} GFLOP/s ({peak['bf16_over_fp32']:.2f}x); CPU flags: "
          f"{', '.join(peak['cpu_flags']) or 'none of avx512_bf16/amx'}")

    allowed = budget(args.nst_json, args.size, bf16)
    if allowed is None:
        print(f"\n(no baseline run at {args.size} px in {args.nst_json}: run benchmarks/nst.py "
              "for the budget the 10x target allows)")
    else:
        print(f"\n10x target at {args.size} px: the baseline took "
              f"{allowed['baseline_cpu_seconds']:.0f} CPU s for {allowed['baseline_iterations']} "
              f"iterations (final loss {allowed['baseline_final_loss']:.4g}); a tenth of that buys "
              f"{allowed['allowed_bf16_evaluations']:.0f} bf16 evaluations at full size, after "
              f"which the baseline itself stood at {allowed['baseline_loss_after_allowed']:.4g}. "
              f"An optimiser would have to reach the final loss in "
              f"{allowed['efficiency_needed']:.1f}x fewer evaluations than L-BFGS, with coarse "
              "scales that cost nothing.")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "size": args.size, "threads": torch.get_num_threads(), "rounds": args.rounds,
        "seconds_per_evaluation": seconds, "matmul_peak": peak, "budget": allowed,
    }, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
