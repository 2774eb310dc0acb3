"""Image classifiers: training (:func:`train`), loading (:func:`load_classifier`), evaluation and
prediction. The networks live in :mod:`impasto.nets.classifier`.

::

    from impasto.classify import ClassifierTrainConfig, train, load_classifier, evaluate

    train(ClassifierTrainConfig(data="mnist/t10k-images-idx3-ubyte.gz", run="runs/lenet"))
    model = load_classifier("runs/lenet")            # best.pt, eval mode, on the CPU
    x = prepare_images(model, images)                # any (N, C, H, W) in [0, 1] -> model input
    logits, feats = model(x), model.features(x)
    print(format_report(evaluate(model, "test-folder")))
"""

from impasto.classify.evaluate import (
    EvalResult,
    collect_image_paths,
    confusion_matrix,
    evaluate,
    extract_features,
    format_confusion,
    format_report,
    load_classifier,
    load_images,
    plot_confusion,
    predict_logits,
    predict_topk,
    prepare_images,
)
from impasto.classify.training import (
    ClassifierProgress,
    ClassifierRunResult,
    ClassifierTrainConfig,
    augment_batch,
    checkpoint_kind,
    lr_factor,
    train,
)
from impasto.nets.classifier import CLASSIFIER_ARCHS, ClassifierNetConfig, build_classifier

__all__ = [
    "CLASSIFIER_ARCHS",
    "ClassifierNetConfig",
    "ClassifierProgress",
    "ClassifierRunResult",
    "ClassifierTrainConfig",
    "EvalResult",
    "augment_batch",
    "build_classifier",
    "checkpoint_kind",
    "collect_image_paths",
    "confusion_matrix",
    "evaluate",
    "extract_features",
    "format_confusion",
    "format_report",
    "load_classifier",
    "load_images",
    "lr_factor",
    "plot_confusion",
    "predict_logits",
    "predict_topk",
    "prepare_images",
    "train",
]
