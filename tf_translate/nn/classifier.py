"""Small image classifiers, trained resumably: DTN's f (stage 1, on the labelled source
domain) and the target-domain classifier that scores DTN's translations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from tqdm.auto import tqdm

from tf_translate import replicas
from tf_translate.progress import bar_interval


def with_head(encoder: keras.Model, classes: int, name: str = "classifier") -> keras.Model:
    """``encoder`` (images -> a (1, 1, D) feature map) followed by a dense layer to class logits."""
    x = layers.Flatten(name="flat")(encoder.output)
    logits = layers.Dense(classes, name="logits", dtype="float32")(x)
    return keras.Model(encoder.input, logits, name=name)


def head(model: keras.Model, features):
    """The logits a ``with_head`` classifier gives for its encoder's ``features`` (the encoder
    not run again)."""
    return model.get_layer("logits")(model.get_layer("flat")(features))


def train(model: keras.Model, batches: Callable, *, steps: int, lr: float, folder: Path | None = None,
          checkpoint_every: int = 200, describe: str = "classifier", adversarial: float = 0.0,
          seed: int = 0) -> None:
    """Train ``model`` (logits) with Adam on softmax cross-entropy for ``steps`` steps of
    ``batches(first_step, count)`` ((images, int labels) batches that depend on the step only).
    With ``adversarial`` > 0 the model learns from adversarial examples instead of the images:
    each image moved by up to ``adversarial`` per pixel (images in [-1, 1]) to raise the loss,
    by one signed-gradient step from a random start drawn from ``seed`` and the step (FGSM with
    random start, Wong, Rice & Kolter, ICLR 2020), so that no small change of an image changes
    the model's reading of it.
    With ``folder``, checkpoints there every ``checkpoint_every`` steps (and on Ctrl-C) and
    resumes from the latest one, replaying the uninterrupted run. Under a ``tf.distribute``
    strategy (the one whose scope ``model`` was built in) each batch is split across replicas."""
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        optimizer = keras.optimizers.Adam(lr)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = None
    if folder is not None:
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
        manager = tf.train.CheckpointManager(ckpt, Path(folder) / "checkpoints", max_to_keep=1)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    def replica_update(x, y):
        y = tf.cast(y, tf.int32)
        if adversarial:
            x = adversarial_examples(model, x, y, adversarial, tf.stack([tf.cast(seed, tf.int64), step]))
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.nn.compute_average_loss(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))

    @tf.function
    def update(x, y):
        loss, accuracy = strategy.run(replica_update, args=(x, y))
        step.assign_add(1)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, accuracy, axis=None))

    first = int(step.numpy())
    if first >= steps:
        return
    bar = tqdm(total=steps, initial=first, unit="step", desc=describe, file=sys.stderr, mininterval=bar_interval())
    try:
        for x, y in strategy.experimental_distribute_dataset(batches(first, steps - first)):
            loss, accuracy = update(x, y)
            now = int(step.numpy())
            bar.update(1)
            if now % 10 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}", accuracy=f"{float(accuracy):.3f}", refresh=False)
            if manager is not None and (now % checkpoint_every == 0 or now == steps):
                manager.save(checkpoint_number=now)
    except KeyboardInterrupt:
        if manager is not None:
            manager.save(checkpoint_number=int(step.numpy()))
            print(f"\ninterrupted at {describe} step {int(step.numpy())}; checkpoint saved in {manager.directory}; "
                  "run the same command to resume", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        bar.close()


def adversarial_examples(model: keras.Model, images, labels, eps: float, key) -> tf.Tensor:
    """``images`` (in [-1, 1]) each moved by at most ``eps`` per pixel to raise ``model``'s
    cross-entropy against ``labels``: a random start in the eps-box (drawn from ``key``), one
    step of 1.25 eps along the sign of the gradient, clipped back to the box (Wong et al. 2020).
    The start is drawn for the global batch, so that replicas split what one device draws."""
    shape = tf.shape(images)
    delta = replicas.draw(lambda n: tf.random.stateless_uniform(tf.concat([[n], shape[1:]], 0), key, -eps, eps,
                                                                dtype=images.dtype), shape[0])
    with tf.GradientTape() as tape:
        tape.watch(delta)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels, model(tf.clip_by_value(images + delta, -1.0, 1.0), training=False)))
    delta = tf.clip_by_value(delta + 1.25 * eps * tf.sign(tape.gradient(loss, delta)), -eps, eps)
    return tf.stop_gradient(tf.clip_by_value(images + delta, -1.0, 1.0))


def outputs(model: keras.Model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """What ``model`` gives ``images`` (a classifier's logits, an encoder's features), ``batch``
    at a time."""
    return np.concatenate([np.asarray(model(images[i: i + batch], training=False))
                           for i in range(0, len(images), batch)])


def probabilities(model: keras.Model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class probabilities (softmax of the logits) ``model`` gives ``images``."""
    return tf.nn.softmax(outputs(model, images, batch)).numpy()


def read(encoder: keras.Model, model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``encoder``'s features of ``images`` and the class probabilities the ``with_head``
    classifier ``model`` built on it gives them (``head``), the encoder run once."""
    features = outputs(encoder, images)
    return features, tf.nn.softmax(head(model, features)).numpy()


def predict(model: keras.Model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class indices ``model`` gives ``images``."""
    return np.argmax(outputs(model, images, batch), axis=1)


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of ``images`` that ``model`` classifies as ``labels``."""
    return float(np.mean(predict(model, images) == np.asarray(labels)))


def centroid_labels(features: np.ndarray, probabilities: np.ndarray, max_rounds: int = 100) -> np.ndarray:
    """SHOT's self-supervised pseudo-labels (Liang, Hu, Feng, ICML 2020, section 3.2): each class's
    centroid of the L2-normalised ``features``, first weighted by a classifier's ``probabilities``,
    then each image's class is its nearest centroid by cosine, the centroids are those classes'
    means, and so on until no label changes (k-means from the classifier's view): where a
    classifier trained on another domain misreads whole stretches of a class, the class's own
    cluster pulls them back. A class no image is nearest to keeps its last centroid."""
    unit = features.reshape(len(features), -1).astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    weights = probabilities.astype(np.float64)
    centroids = weights.T @ unit / np.maximum(weights.sum(axis=0), 1e-12)[:, None]
    labels = None
    for _ in range(max_rounds):
        directions = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        new = np.argmax(unit @ directions.T, axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for k in np.unique(labels):
            centroids[k] = unit[labels == k].mean(axis=0)
    return labels
