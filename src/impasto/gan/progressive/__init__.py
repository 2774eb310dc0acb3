"""Progressive growing of GANs (Karras et al. 2018): the schedule, the loss, the training loop
and sampling at any resolution reached.

::

    from impasto.gan.progressive import PgganSchedule, PgganTrainConfig, train

    config = PgganTrainConfig(data="faces/", run="runs/pg", resolution=64, channels=1,
                              widths=(128, 128, 64, 32, 16), schedule=PgganSchedule.cpu())
    result = train(config, progress=print)             # returns when the schedule is done
    train(config, resume="runs/pg")                    # or continue a stopped run exactly

The modules, by concept:

* :mod:`~impasto.gan.progressive.schedule`: :class:`PgganSchedule` (phases of ``stable_kimg``
  and ``fade_kimg`` thousand real images, one batch size per resolution; the ``paper`` and
  ``cpu`` presets), :class:`Phase` and :class:`Stage` (resolution, phase, α): the stage is a
  pure function of the real images shown to D, so a resumed run is where it left off.
* :mod:`~impasto.gan.progressive.config`: :class:`PgganTrainConfig`.
* :mod:`~impasto.gan.progressive.loss`: :func:`prepare_reals` (the reals fade like G's
  output) and :class:`PgganLoss` (WGAN-GP with λ = 10 plus the drift ``0.001 * E[D(x)^2]``).
* :mod:`~impasto.gan.progressive.training`: :func:`train` on the shared run skeleton.
* :mod:`~impasto.gan.progressive.sampling`: the generator of a checkpoint or model file at a
  resolution it has reached.

**Optimiser and averaging**: Adam with β = (0, 0.99), learning rate 1e-3 for both networks; an
EMA of G's weights for samples. The paper's fixed β = 0.999 spans about 1000 steps: right for
the paper's phases (~50,000 steps each), too long for short CPU schedules, where it is still
mostly the random initial weights of the block just faded in (measured on the Olivetti faces at
8x8: after 120 kimg the raw G and a 0.99-EMA made faces, the 0.999-EMA noise). The default is
therefore a half-life of 10 kimg (0.999's at the paper's batch 16), at most 5% of the images
seen (``ema_kimg``; see :class:`~impasto.gan.GanTrainConfig`); ``ema_beta`` gives a fixed
decay instead.

**Optimiser state when a resolution is added.** The official code
(``tkarras/progressive_growing_of_gans``, ``train.py``, ``reset_opt_for_new_lod=True``) resets
both optimisers' internal state (Adam's moment estimates) whenever the level of detail crosses
an integer, that is at the start of every fade *and* of every stable phase: the new layers
change the gradient statistics the moments describe. impasto does the same (fresh Adam state at
the first step of every phase; ``reset_optimizers=False`` keeps it instead). The official code
checks the schedule every 4 minibatches (``minibatch_repeats``); here α and the phase are
updated at every step.

**Runtime** as :func:`impasto.gan.train`: bf16 autocast (``precision``; the gradient penalty
and every loss in float32), channels_last, deterministic mode, DDP under ``torchrun`` (rank 0
logs and checkpoints), exact resume, a NaN guard, ``stats.jsonl`` and TensorBoard with the
resolution, α, the phase and the batch size, and a sample grid of the EMA generator at the
current resolution (at every ``sample_every`` steps and at the end of every phase).

**Checkpoints** (``kind`` ``"gan/pggan"``) hold G, D, the EMA of G, both optimisers, images
seen, every RNG state, the config, the format version and, in ``extra``: the network config,
the stage of the last step (resolution, phase, α, phase index, batch size) and the data
position. They are written atomically at ``ckpt_every`` steps, at the end of every phase, at
the end and on abort; the last ``keep_last`` are kept.

**The tracked metric** (``metric="swd"``, as :class:`~impasto.gan.GanTrainConfig`'s): the
multi-scale SWD between ``metric_samples`` images of G_ema (fixed latents, 8-bit) and as many
fixed real images (a seeded choice), logged as ``metric/swd``; ``best.pt`` (with ``best.json``)
keeps the checkpoint of the lowest value. SWD needs images of at least 16x16, and values at
different resolutions are not comparable (the pyramid has another number of levels, the images
another amount of detail), so it is measured only while the stage is the target resolution,
stable: at every ``metric_every`` steps and at the end of the run (a run that stops before
that phase measures nothing; the fades and lower resolutions are never measured). Measuring
draws from its own seeded generators only (rank 0 measures; every rank makes the same
checkpoint calls), so a run gives the same weights with and without it, and a resume keeps
``best.json``'s best value.
"""

from impasto.gan.progressive.config import PgganTrainConfig
from impasto.gan.progressive.loss import PgganLoss, prepare_reals
from impasto.gan.progressive.sampling import (
    CHECKPOINT_KIND,
    generator_from_checkpoint,
    pggan_generator,
    reached_resolutions,
)
from impasto.gan.progressive.schedule import (
    CPU_BATCH_SIZES,
    PAPER_BATCH_SIZES,
    SCHEDULE_PRESETS,
    Phase,
    PgganSchedule,
    Stage,
    stage_at,
)
from impasto.gan.progressive.training import PgganProgress, PgganRunResult, train

__all__ = [
    "CHECKPOINT_KIND",
    "CPU_BATCH_SIZES",
    "PAPER_BATCH_SIZES",
    "SCHEDULE_PRESETS",
    "Phase",
    "PgganLoss",
    "PgganProgress",
    "PgganRunResult",
    "PgganSchedule",
    "PgganTrainConfig",
    "Stage",
    "generator_from_checkpoint",
    "pggan_generator",
    "prepare_reals",
    "reached_resolutions",
    "stage_at",
    "train",
]
