"""TranslationModel: what every method shares (step counter, trackers, optimizers, export view)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tf_translate.config import RunConfig
from tf_translate.nn import losses


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant ``lr`` for ``epochs`` epochs, then linear decay towards 0 over ``decay_epochs``,
    changing once per epoch as in the CycleGAN/pix2pix reference code:
    lr(e) = lr * (1 - max(0, e + 1 - epochs) / (decay_epochs + 1)), e the 0-based epoch.
    ``steps_per_epoch`` counts the global steps of an epoch, and this optimizer updates once
    ``every`` steps: StarGAN's generator once per ``n_critic``, after the n_critic-th update of
    D, so its update i is at global step (i + 1) * ``every`` - 1; DTN's g ``g_steps`` times a
    step (``every`` 1 / ``g_steps``), its update i at global step floor(i * ``every``).
    """

    def __init__(self, lr: float, epochs: int, decay_epochs: int, steps_per_epoch: int, every: float = 1):
        self.lr, self.epochs, self.decay_epochs, self.steps_per_epoch = lr, epochs, decay_epochs, steps_per_epoch
        self.every = every

    def __call__(self, iterations):
        step = tf.cast(iterations, tf.float32) * self.every + max(0.0, self.every - 1.0)
        epoch = tf.floor(step / self.steps_per_epoch)
        decayed = tf.maximum(0.0, epoch + 1.0 - self.epochs) / float(self.decay_epochs + 1)
        return self.lr * tf.maximum(0.0, 1.0 - decayed)

    def get_config(self):
        return {"lr": self.lr, "epochs": self.epochs, "decay_epochs": self.decay_epochs,
                "steps_per_epoch": self.steps_per_epoch, "every": self.every}


@dataclasses.dataclass
class DomainLabels:
    """A generator conditioned on named domains (StarGAN): the label vector's entries, whether
    they are attributes (multi-label), and, for attributes, the discriminator whose
    classification head reads them off a photo (``classify``) with its training sizes."""
    names: tuple[str, ...]
    multi_label: bool
    discriminator: object = None
    load_size: int = 0
    crop_size: int = 0


class TranslationModel(keras.Model):
    """Base of every method: ``call(x)`` translates with the main generator.

    Subclasses set ``self.nets`` (role -> keras.Model), ``self.generator_roles`` and
    ``self.discriminator_roles``, name their loss trackers, and implement ``train_step``.
    """

    method_name = "base"
    loss_names: tuple[str, ...] = ()
    generator_every = 1  # global steps per generator update (StarGAN: n_critic; DTN: 1 / g_steps)
    # The validation measure on held-out data and whether larger is better.
    validation_key = "val_loss"
    validation_mode = "min"
    validation_shown: tuple[str, ...] = ()  # other validation scores printed beside the key

    def __init__(self, config: RunConfig, **kwargs):
        super().__init__(name=self.method_name, **kwargs)
        self.run_config = config
        self.seed = config.train.seed
        self.step = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False, name="step",
                                    aggregation="only_first_replica")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def role_variables(self, roles) -> list:
        return [v for role in roles for v in self.nets[role].trainable_variables]

    def compile(self, g_optimizer, d_optimizer=None, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_optimizer.build(self.role_variables(self.generator_roles))
        if d_optimizer is not None:
            self.d_optimizer.build(self.role_variables(self.discriminator_roles))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: the networks are built when made, and compile() takes no loss or
        metrics. Keras' own version first reduces a data batch across replicas, which fails
        under MultiWorkerMirroredStrategy (Keras 3.15: "Attempt to convert a value (PerReplica...")."""

    def apply_gradients(self, optimizer, tape, loss, roles) -> tf.Tensor:
        """One optimizer update for ``roles``; returns whether every gradient was finite.

        Finiteness is checked here, on the gradients, because oneDNN can turn a NaN into 0
        inside fused ops, and the loss that TerminateOnNaN reads may stay finite.
        """
        variables = self.role_variables(roles)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            # float16: gradients of the scaled loss, which the optimizer unscales, skipping (and
            # lowering the scale) on overflow; so only a non-finite loss is a failure here
            grads = tape.gradient(loss, variables, output_gradients=tf.cast(optimizer.dynamic_scale, loss.dtype))
            optimizer.apply_gradients(zip(grads, variables))
            return tf.math.is_finite(loss)
        grads = tape.gradient(loss, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
        optimizer.apply_gradients(zip(grads, variables))
        return finite

    def record(self, losses: dict, finite, weights: dict | None = None) -> dict:
        """Update trackers with the global-batch value of each loss (reduce() gives this
        replica's share), return the logs, with ``loss`` and the finiteness flag. ``weights``
        (0 or 1 per loss) leave out the steps where a loss was not computed."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for name, value in losses.items():
            self.trackers[name].update_state(value * replicas, sample_weight=(weights or {}).get(name))
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        logs["loss"] = logs[self.loss_names[0]]
        logs["finite"] = tf.cast(finite, tf.float32)
        self.step.assign_add(1)
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces multi-worker logs with reduce(MEAN, axis=0), which needs a batch axis
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def static_batch(self, data):
        """``data`` with this replica's batch size set in its shapes (under
        MultiWorkerMirroredStrategy it arrives unknown; the image pool loops over it)."""
        local = self.run_config.data.batch_size // tf.distribute.get_strategy().num_replicas_in_sync
        for tensor in tf.nest.flatten(data):
            if tensor.shape.rank and tensor.shape[0] is None:
                tensor.set_shape([local, *tensor.shape[1:]])
        return data

    def global_batch(self, x) -> tf.Tensor:
        return tf.shape(x)[0] * tf.distribute.get_strategy().num_replicas_in_sync

    def call(self, x, training=False):
        """The model's (first) generator G."""
        return self.G(x, training=training)

    def gan(self, scores, real: bool) -> tf.Tensor:
        """Per-sample GAN loss of the method's ``gan_loss`` kind."""
        return losses.gan_loss(self.run_config.model.gan_loss, scores, real)

    def reduce(self, per_sample, like) -> tf.Tensor:
        """This replica's share of the mean over the global batch of ``like``."""
        return losses.reduce(per_sample, self.global_batch(like))

    # --- what export and the callbacks use -------------------------------------------------

    def generators(self) -> dict:
        """Signature name -> (generator model, input channels); the first is serving_default."""
        raise NotImplementedError

    def down_factor(self) -> int:
        """Input height and width must be multiples of this (signatures pad and crop)."""
        return 1

    def input_size(self) -> int | None:
        """The one square size the generators take (DTN's f ends in a valid convolution);
        None = any height and width."""
        return None

    def readers(self) -> dict:
        """Networks exported beside the generators that read images rather than draw them:
        signature name -> (model on [-1, 1] images, output name, function of its output)."""
        return {}

    def before_fit(self, data, run_dir) -> None:
        """Work a run does before its training steps (DTN's stage 1); nothing by default."""

    def domain_labels(self):
        """An ``export.DomainLabels`` for a generator conditioned on named domains; None otherwise."""
        return None

    sequence_titles: tuple[str, ...] = ("generated", "real")

    def sequences(self, batch) -> list[tuple[list, ...]]:
        """Per sample, frame sequences to animate side by side, one per ``sequence_titles``
        (generated, real, ...); none by default."""
        return []

    def sample_rows(self, batch) -> list[list[np.ndarray]]:
        """Rows of float [-1, 1] images for a sample panel, with ``self.panel_titles`` columns."""
        raise NotImplementedError

    def validate(self, held_out) -> dict:
        raise NotImplementedError
