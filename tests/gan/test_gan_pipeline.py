"""GanGenerator: loading from a run folder, a checkpoint or a model file (export_model, and the
one a run writes at its end), seeds, truncation, classes, PIL output, slerp."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from impasto.errors import InputError
from impasto.gan import GanGenerator, GanTrainConfig, slerp, train
from impasto.nets.gan import build_gan, sample_latents

Z = 16


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A conditional DCGAN trained for 30 steps on 3 classes of coloured squares."""
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    colours = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230]], dtype=np.float64)
    images, labels = [], []
    for i in range(48):
        k = i % 3
        img = np.full((32, 32, 3), 20.0) + rng.normal(0, 8, (32, 32, 3))
        top, left = rng.integers(0, 16, 2)
        img[top : top + 16, left : left + 16] = colours[k]
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(k)
    np.savez(root / "squares.npz", images=np.stack(images), labels=np.array(labels))
    cfg = GanTrainConfig(
        data=str(root / "squares.npz"), run=str(root / "run"), conditional=True, z_dim=Z,
        base_width=8, batch_size=8, steps=30, precision="fp32", device="cpu", deterministic=True,
        log_every=0, sample_every=0, ckpt_every=15, n_samples=4, tensorboard=False, lr_g=1e-3,
        ema_rampup=0.02,  # so that the EMA weights follow G in so short a run
        output=str(root / "squares-gan.pt"),
    )
    result = train(cfg)
    return result


def test_load_from_run_folder_and_from_file(run):
    from_folder = GanGenerator.load(run.run)
    from_file = GanGenerator.load(run.checkpoint)
    older = GanGenerator.load(run.run / "ckpt-000000015.pt")
    assert from_folder.source == from_file.source == str(run.checkpoint)
    assert (from_folder.z_dim, from_folder.num_classes, from_folder.resolution) == (Z, 3, 32)
    assert from_folder.classes == ["0", "1", "2"]
    a, b, c = from_folder(8, seed=5), from_file(8, seed=5), older(8, seed=5)
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3  # the step-15 checkpoint is another generator
    # the EMA weights are the ones trained into G_ema, the raw ones G's
    ema = from_folder.G.state_dict()
    for k, v in run.G_ema.state_dict().items():
        assert torch.equal(ema[k], v), k
    raw = GanGenerator.load(run.run, ema=False).G.state_dict()
    for k, v in run.G.state_dict().items():
        assert torch.equal(raw[k], v), k
    assert not torch.equal(raw["to_image.weight"], ema["to_image.weight"])


def test_model_files_round_trip(run, tmp_path):
    import impasto
    from impasto.gan import export_model
    from impasto.train import load_model, save_model

    assert impasto.GanGenerator is GanGenerator
    ref = GanGenerator.from_file(run.run)  # device "auto": the CPU here
    assert ref.device == torch.device("cpu")
    want = ref(6, seed=3, class_="2")
    # the model file the run wrote at its end, and exported ones in both formats
    files = [run.output] + [export_model(run.run, tmp_path / n) for n in ("g.pt", "g.safetensors")]
    assert run.output == Path(run.config.output) and files[0].exists()
    for path in files:
        m = load_model(path)
        assert (m.kind, m.legacy, m.extra["classes"], m.extra["step"]) == (
            "gan/dcgan", None, ["0", "1", "2"], 30)
        gen = GanGenerator.from_file(path, "cpu")
        assert gen.classes == ["0", "1", "2"] and gen.source == str(path)
        assert torch.equal(gen(6, seed=3, class_="2"), want)
    # a model file holds the moving average only; another family's model is refused
    with pytest.raises(InputError, match="a model file holds only the generator's moving"):
        GanGenerator.from_file(files[1], ema=False)
    other = save_model(tmp_path / "c.pt", kind="classify/lenet", config={}, state_dict={})
    with pytest.raises(InputError, match="is a 'classify/lenet' model file, not a GAN's"):
        GanGenerator.from_file(other)
    with pytest.raises(InputError, match="renders only at 32x32"):
        GanGenerator.from_file(files[2], resolution=16)


def test_model_file_setting_is_checked_before_training(run, tmp_path):
    with pytest.raises(InputError, match="the run folder and the model file are the same path"):
        GanTrainConfig(data="x", run=str(tmp_path / "r"), output=str(tmp_path / "r"))
    cfg = dataclasses.replace(run.config, run=str(tmp_path / "r"), output=str(tmp_path))
    with pytest.raises(InputError, match="is a folder; give a file name for the model file"):
        train(cfg)
    assert not (tmp_path / "r").exists()


def test_pil_output_and_latents_given_first(run):
    gen = GanGenerator.load(run.run)
    z = gen.latents(3, seed=4)
    images = gen(z)
    assert torch.equal(images, gen(3, seed=4)) and torch.equal(images, gen(latents=z))
    pictures = gen(3, seed=4, output="pil")
    assert len(pictures) == 3 and pictures[0].mode == "RGB" and pictures[0].size == (32, 32)
    u8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert all(np.array_equal(np.asarray(p), a) for p, a in zip(pictures, u8))
    with pytest.raises(InputError, match="output must be one of tensor, pil, not 'png'"):
        gen(1, output="png")
    with pytest.raises(InputError, match="give the latents once"):
        gen(z, latents=z)


def test_seeds_are_reproducible(run):
    gen = GanGenerator.load(run.run)
    a, b, c = gen(6, seed=11), gen(6, seed=11), gen(6, seed=12)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3
    # the first k images of a seed do not depend on n; image i uses latent i of the seed
    assert torch.equal(gen(3, seed=11), a[:3])
    z = sample_latents(6, Z, torch.Generator().manual_seed(11))
    assert torch.equal(gen(latents=z), a)
    # and a seed's latent is the one gen(1, seed=s) and interpolate use
    assert torch.equal(gen.seed_latents([11])[0], z[0])


def test_truncation_changes_samples(run):
    gen = GanGenerator.load(run.run)
    plain = gen.latents(64, seed=2)
    trunc = gen.latents(64, seed=2, truncation=0.5)
    assert plain.abs().max() > 1.5 and trunc.abs().max() <= 0.5
    inside = plain.abs() <= 0.5  # entries already inside the range are kept
    assert torch.equal(trunc[inside], plain[inside])
    a, b = gen(4, seed=2), gen(4, seed=2, truncation=0.5)
    assert (a - b).abs().mean() > 1e-3
    assert torch.equal(b, gen(4, seed=2, truncation=0.5))
    with pytest.raises(InputError, match="truncation"):
        gen(4, seed=2, truncation=0.0)
    with pytest.raises(InputError, match="truncation applies to sampled latents"):
        gen(latents=plain[:2], truncation=0.5)


def test_classes_change_the_images(run):
    gen = GanGenerator.load(run.run)
    by_class = [gen(4, seed=3, class_=k) for k in range(3)]
    assert torch.equal(by_class[1], gen(4, seed=3, class_="1"))  # by name
    assert torch.equal(by_class[1], gen(4, seed=3, class_=[1, 1, 1, 1]))
    # (after 30 steps the class embeddings of the conditional batch norm have moved only a
    # little, but deterministically: any difference is the class's doing)
    for i in range(3):
        for j in range(i + 1, 3):
            assert (by_class[i] - by_class[j]).abs().mean() > 1e-5
    # without a class, a conditional model goes through the classes in turn
    mixed = gen(4, seed=3)
    for i, k in enumerate([0, 1, 2, 0]):
        assert torch.equal(mixed[i], by_class[k][i])
    for bad in (3, -1, "cat"):
        with pytest.raises(InputError, match="class"):
            gen(2, seed=0, class_=bad)


def test_class_on_an_unconditional_generator_is_an_error(run):
    G, _ = build_gan(
        {"arch": "dcgan", "resolution": 32, "z_dim": Z, "base_width": 8}
    )
    gen = GanGenerator(G)
    assert gen(2, seed=0).shape == (2, 3, 32, 32)
    with pytest.raises(InputError, match="unconditional"):
        gen(2, seed=0, class_=0)


def test_slerp_by_hand():
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])
    mid = slerp(a, b, 0.5)
    # direction halfway round the quarter circle, norm halfway between 1 and 2
    torch.testing.assert_close(mid, 1.5 * torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2))
    path = slerp(a, b, torch.linspace(0, 1, 7))
    assert path.shape == (7, 3)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    angles = torch.atan2(path[:, 1], path[:, 0])
    torch.testing.assert_close(angles, torch.linspace(0, math.pi / 2, 7))  # constant speed
    # parallel vectors: a straight line, no NaN
    torch.testing.assert_close(slerp(a, 3 * a, 0.5), 2 * a)


def test_interpolation_is_a_slerp_through_the_seeds(run):
    gen = GanGenerator.load(run.run)
    seeds = [4, 9, 2]
    keys = gen.seed_latents(seeds)
    z = gen.interpolation_latents(seeds, 9)
    assert z.shape == (9, Z)
    # the path starts, passes and ends at the seeds' latents exactly (frames 0, 4, 8)
    assert torch.equal(z[0], keys[0]) and torch.equal(z[4], keys[1]) and torch.equal(z[8], keys[2])
    # norms stay between the endpoint norms (a linear path sags towards the origin)
    norms = z.norm(dim=1)
    for seg in (slice(0, 5), slice(4, 9)):
        n = norms[seg]
        lo, hi = min(n[0], n[-1]), max(n[0], n[-1])
        assert ((n >= lo - 1e-4) & (n <= hi + 1e-4)).all()
    lerp_mid = ((keys[0] + keys[1]) / 2).norm()
    assert norms[2] > lerp_mid * 1.1
    # and equal angular steps within a segment
    cos = torch.nn.functional.cosine_similarity(z[:4], z[1:5])
    torch.testing.assert_close(cos, cos[:1].expand(4), atol=1e-5, rtol=0)
    frames = gen.interpolate(seeds, 9, class_=2)
    assert frames.shape == (9, 3, 32, 32)
    assert torch.equal(frames[0], gen(1, seed=4, class_=2)[0])
    assert torch.equal(frames[8], gen(1, seed=2, class_=2)[0])
    assert (frames[1:] - frames[:-1]).abs().amax(dim=(1, 2, 3)).min() > 0  # it moves
    # loop: back towards the first seed, never repeating it at the end
    loop = gen.interpolation_latents(seeds, 6, loop=True)
    assert torch.equal(loop[0], keys[0]) and torch.equal(loop[2], keys[1])
    assert not torch.equal(loop[-1], keys[0])
    with pytest.raises(InputError, match="at least two seeds"):
        gen.interpolate([1], 5)
    with pytest.raises(InputError, match="frames"):
        gen.interpolate([1, 2], 1)
    # progress after each batch (the studio's video), the same frames whatever the batches
    seen = []
    batched = gen.interpolate(seeds, 9, class_=2, batch_size=4,
                              progress=lambda done, n, x: seen.append((done, n, len(x))))
    assert seen == [(4, 9, 4), (8, 9, 4), (9, 9, 1)]
    torch.testing.assert_close(batched, frames, atol=1e-6, rtol=0)
