"""Seeded training recipe: a small Keras CNN on the ``digits`` train split.

The recipe is the weights' source for a ``tensorflow`` card: the same seed
gives the same model (TensorFlow op determinism is on), and it trains on the
``train`` split only, so the card's ``test`` samples stay unseen.
"""

from __future__ import annotations

from pathlib import Path

from zoocompat_zoo.recipes.pinned import pinned

from zoocompat.api.registry import registry

MODEL_FILE = "digits_cnn.keras"
INPUT_SCALE = 1 / 16  # digits pixels are 0..16; the card's preprocess.scale must match
#: TensorFlow's intra-op threads while training (inter-op: 1); fixed, so the batches reduce in one order.
THREADS = 2


def _build(keras):
    """The network: three small convolutions, global pooling, softmax over 10 digits."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), name="input"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="digits_cnn",
    )


@pinned(THREADS)
def train_cnn(out_dir: Path, epochs: int = 30, seed: int = 0) -> None:
    """Train the CNN with ``seed`` and write ``out_dir/digits_cnn.keras`` (only that file)."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    pool = registry().get("dataset", "digits").load("train", seed, {})
    images = pool.samples * INPUT_SCALE

    model = _build(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(images, pool.labels, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_FILE)
