"""Seeded training recipes: Keras models on the ``mnist`` train split.

* :func:`train_mobilenetv2`: ``keras.applications.MobileNetV2`` (built with
  ``weights=None``, trained from scratch) on MNIST digits turned into small RGB
  images; writes one ``.keras`` file.
* :func:`export_savedmodel_cnn`: a small Keras CNN exported with
  ``model.export`` as a TensorFlow SavedModel folder, the form a user most often
  brings; the frontend loads it through the same SavedModel path as a user's
  ``source: {kind: file, path: my_model/}`` card.

Training images go through the core's own preprocessing
(:func:`zoocompat.model.data.preprocess_image`) with the same values as the cards'
``inputs.preprocess``, so the model sees at training time exactly what the
cells feed it. Training uses the ``train`` split only; the cards' ``test``
samples stay unseen. The same seed gives the same model (TensorFlow op
determinism is on).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from zoocompat_zoo.recipes.pinned import pinned

from zoocompat.api.registry import registry
from zoocompat.model.cards import Preprocess
from zoocompat.model.data import preprocess_image

MOBILENETV2_FILE = "mobilenetv2.keras"
SAVED_MODEL_DIR = "saved_model"

#: The keras_mobilenetv2 card's preprocess: grey -> RGB, 32x32, pixels to [-1, 1]
#: (what ``keras.applications.mobilenet_v2.preprocess_input`` does).
MOBILENETV2_PREPROCESS = Preprocess(channels=3, resize=(32, 32), scale=1 / 127.5, mean=[1.0, 1.0, 1.0])
#: The keras_savedmodel_mnist card's preprocess: 28x28 grey, pixels to [0, 1].
CNN_PREPROCESS = Preprocess(scale=1 / 255)
#: TensorFlow's intra-op threads while training (inter-op: 1); fixed, so the batches reduce in one order.
THREADS = 2


def mnist_train(spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """The ``mnist`` train split through ``spec``: ``N x H x W x C`` float32 images and int64 labels."""
    pool = registry().get("dataset", "mnist").load("train", 0, {})
    images = np.stack([preprocess_image(image, spec) for image in pool.samples]).astype(np.float32)
    return images, np.asarray(pool.labels)


def _seed(seed: int):
    """Seed Python, NumPy and TensorFlow, fix its thread counts and make its ops deterministic; return keras."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return keras


def _fit(
    keras,
    model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    shift: float,
    background: float,
    seed: int,
    **fit_options,
) -> None:
    """Adam with a cosine decay over all steps, sparse cross-entropy on softmax outputs.

    Training images are moved by up to ``shift`` of their size (filled with
    ``background``) by a seeded ``RandomTranslation`` layer in front of
    ``model``; only ``model`` is saved, so the layer never reaches a cell.
    """
    steps = epochs * -(-len(labels) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
    trainer = model
    if shift:
        augment = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", fill_value=background, seed=seed)
        trainer = keras.Sequential([keras.Input(shape=images.shape[1:]), augment, model])
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainer.fit(images, labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, **fit_options)


@pinned(THREADS)
def train_mobilenetv2(
    out_dir: Path,
    epochs: int = 14,
    seed: int = 0,
    alpha: float = 0.35,
    bn_momentum: float = 0.9,
    batch_size: int = 64,
    lr: float = 3e-3,
    shift: float = 0.04,
    dropout: float = 0.3,
) -> None:
    """Train MobileNetV2 (``alpha``, 32x32x3, 10 classes, softmax) and write ``out_dir/mobilenetv2.keras``.

    ``keras.applications`` builds BatchNormalization with momentum 0.999, tuned
    for ImageNet-length runs: after a few hundred steps its moving statistics
    are still far from the data's and the inference-mode model is poor. The
    recipe sets ``bn_momentum`` on every BatchNormalization layer before training.
    """
    keras = _seed(seed)
    images, labels = mnist_train(MOBILENETV2_PREPROCESS)
    backbone = keras.applications.MobileNetV2(
        input_shape=images.shape[1:], alpha=alpha, include_top=False, weights=None, pooling="avg"
    )
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(keras.layers.Dropout(dropout)(backbone.output))
    model = keras.Model(backbone.input, probs, name=f"mobilenetv2_{alpha}_mnist")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    background = -1.0  # a black pixel after MOBILENETV2_PREPROCESS
    options = dict(epochs=epochs, lr=lr, batch_size=batch_size, shift=shift, background=background, seed=seed)
    _fit(keras, model, images, labels, **options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MOBILENETV2_FILE)


def _cnn(keras):
    """A small CNN: two conv-BN-ReLU-maxpool blocks, a conv, flatten, dropout, softmax over 10 digits."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="image"),
            layers.Conv2D(16, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="mnist_cnn",
    )


@pinned(THREADS)
def export_savedmodel_cnn(
    out_dir: Path, epochs: int = 6, seed: int = 0, batch_size: int = 64, lr: float = 3e-3, shift: float = 0.04
) -> None:
    """Train the small CNN and export it as a SavedModel folder ``out_dir/saved_model/``.

    ``model.export`` (Keras 3) writes a TensorFlow SavedModel with a
    ``serving_default`` signature: the frontend loads it with
    ``tf.saved_model.load``, with no Keras object in sight, as it would a
    user's own export.
    """
    keras = _seed(seed)
    images, labels = mnist_train(CNN_PREPROCESS)
    model = _cnn(keras)
    _fit(
        keras,
        model,
        images,
        labels,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        shift=shift,
        background=0.0,
        seed=seed,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.export(str(out_dir / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
