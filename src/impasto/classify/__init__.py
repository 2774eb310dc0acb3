"""Image classifiers: training (:func:`train`), the inference pipeline (:class:`Classifier`),
model files (:func:`export_model`), loading (:func:`load_classifier`), evaluation and
prediction. The networks live in :mod:`impasto.nets.classifier`.

::

    from impasto.classify import ClassifierTrainConfig, train, load_classifier, evaluate

    train(ClassifierTrainConfig(data="mnist/t10k-images-idx3-ubyte.gz", run="runs/lenet"))
    Classifier.from_file("runs/lenet")(["a.png", "b.png"])   # ["7", "2"]
    export_model("runs/lenet", "lenet.pt")          # a model file: from_file reads it too
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
    network_from,
    plot_confusion,
    predict_logits,
    predict_topk,
    prepare_images,
    read_classifier,
)
from impasto.classify.pipeline import Classifier, export_model
from impasto.classify.training import (
    ClassifierProgress,
    ClassifierRunResult,
    ClassifierTrainConfig,
    augment_batch,
    checkpoint_kind,
    lr_factor,
    train,
)
from impasto.nets.classifier import (
    CLASSIFIER_ARCHS,
    ClassifierNetConfig,
    build_classifier,
)

__all__ = [
    "CLASSIFIER_ARCHS",
    "Classifier",
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
    "export_model",
    "extract_features",
    "format_confusion",
    "format_report",
    "load_classifier",
    "load_images",
    "lr_factor",
    "network_from",
    "plot_confusion",
    "predict_logits",
    "predict_topk",
    "prepare_images",
    "read_classifier",
    "train",
]
