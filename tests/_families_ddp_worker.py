"""A rank of tests/test_families.py's DDP contract: argv = root folder, family names."""

import dataclasses
import itertools
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from test_families import ADAPTERS  # noqa: E402

from impasto.families import FAMILIES  # noqa: E402
from impasto.train import cleanup, init_distributed  # noqa: E402


def summary(result):
    nets = {k: {n: t.clone() for n, t in v.state_dict().items()}
            for k, v in vars(result).items() if isinstance(v, nn.Module)}
    return {"nets": nets, "step": int(result.step), "aborted": bool(result.aborted),
            "stats": dict(result.stats), "val": getattr(result, "val", None),
            "images_seen": int(getattr(result, "images_seen", 0) or _images(result)),
            "checkpoint": None if result.checkpoint is None else str(result.checkpoint)}


def _images(result):
    from impasto.train import load_checkpoint

    return load_checkpoint(result.checkpoint)["images_seen"] if result.checkpoint else 0


def main() -> None:
    root, names = Path(sys.argv[1]), sys.argv[2].split(",")
    info = init_distributed("cpu")
    try:
        for name in names:
            fam, ad, tmp = FAMILIES.get(name), ADAPTERS[name], root / name
            out = {"straight": summary(fam.train(ad.config(tmp, "a"), **ad.train_kwargs()))}
            polls = itertools.count(1)
            at = ad.ddp_abort_after or ad.abort_after
            abort = (lambda: next(polls) >= at) if info.rank == 1 else None
            out["aborted"] = summary(fam.train(ad.config(tmp, "b"), abort=abort,
                                               **ad.train_kwargs()))
            out["resumed"] = summary(fam.train(ad.config(tmp, "b"), resume=tmp / "b",
                                               **ad.train_kwargs()))
            for variant, overrides in ad.ddp_variants.items():
                config = dataclasses.replace(ad.config(tmp, variant), **overrides)
                out[variant] = summary(fam.train(config, **ad.train_kwargs()))
            torch.save(out, tmp / f"rank{info.rank}.pt")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
