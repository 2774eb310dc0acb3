"""A rank of tests/test_families.py's DDP contract: argv = root folder, family names."""

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
    return {"nets": nets, "step": int(result.step), "aborted": bool(result.aborted)}


def main() -> None:
    root, names = Path(sys.argv[1]), sys.argv[2].split(",")
    info = init_distributed("cpu")
    try:
        for name in names:
            fam, ad, tmp = FAMILIES.get(name), ADAPTERS[name], root / name
            out = {"straight": summary(fam.train(ad.config(tmp, "a"), **ad.train_kwargs()))}
            polls = itertools.count(1)
            abort = (lambda: next(polls) >= ad.abort_after) if info.rank == 1 else None
            out["aborted"] = summary(fam.train(ad.config(tmp, "b"), abort=abort,
                                               **ad.train_kwargs()))
            out["resumed"] = summary(fam.train(ad.config(tmp, "b"), resume=tmp / "b",
                                               **ad.train_kwargs()))
            torch.save(out, tmp / f"rank{info.rank}.pt")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
