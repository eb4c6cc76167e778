"""Adam as the reference implementations run it (``torch.optim.Adam``).

Keras' Adam adds epsilon to the square root of the second moment before its bias
correction, ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, with eps 1e-7;
PyTorch adds it after, ``lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)``, with eps 1e-8.
At the first step Keras' epsilon is in effect 1e-7 / sqrt(1 - 0.999) = 3.2e-6, 316 times
PyTorch's, which damps every weight whose gradient is that small: GAN gradients of a few
1e-6 are common in the first steps. The lockstep tests against the reference code
(tests/test_lockstep.py) found it. The methods whose reference is PyTorch code use it
(``registry.MethodSpec.adam``).
"""

from __future__ import annotations

import keras
from keras import ops


class Adam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with PyTorch's update; the same slots (a checkpoint of one
    restores into the other)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        # convert_to_tensor, not cast: a cast goes through float32 (0.999 -> 0.99900001)
        correction_1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, dtype), step)
        correction_2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(correction_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / correction_1), denominator))
