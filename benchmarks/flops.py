"""Work per image and this machine's measured peak, for benchmarks/benchmark.py.

FLOPs are counted by TensorFlow's profiler on the network's graph at a fixed input size
(a multiply-add is 2 FLOPs; convolutions, transposed convolutions, matmuls and element-wise
ops as TF registers them). The peak is measured, not looked up: the best of several runs of
a large float32 matmul and of a large 3x3 convolution, which bound what the CPU delivers
through TensorFlow's kernels.
"""

from __future__ import annotations

import time


def flops_per_image(net, size: int) -> int:
    """Float operations of one forward pass of a Keras ``net`` on one ``size`` x ``size`` image
    (a second input, a condition, at the image's size or as a vector)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    specs = [tf.TensorSpec([1, *(size if d is None else d for d in t.shape[1:])], tf.float32) for t in net.inputs]

    @tf.autograph.experimental.do_not_convert
    def forward(*inputs):
        return net(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    frozen = convert_variables_to_constants_v2(tf.function(forward).get_concrete_function(*specs))
    options = (option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    return int(model_analyzer.profile(graph=frozen.graph, options=options).total_float_ops)


def machine_peak(repeats: int = 5) -> dict:
    """GFLOP/s of a 2048^3 float32 matmul and of a 3x3 convolution 256 -> 256 channels on a
    128x128 map (best of ``repeats`` after a warm-up)."""
    import tensorflow as tf

    a = tf.random.stateless_normal([2048, 2048], seed=[0, 1])
    x = tf.random.stateless_normal([1, 128, 128, 256], seed=[0, 2])
    k = tf.random.stateless_normal([3, 3, 256, 256], seed=[0, 3])
    jobs = {"matmul_2048": (lambda: tf.linalg.matmul(a, a), 2 * 2048**3),
            "conv3x3_256_128px": (lambda: tf.nn.conv2d(x, k, 1, "SAME"), 2 * 9 * 256 * 256 * 128 * 128)}
    out = {}
    for name, (job, work) in jobs.items():
        job().numpy()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            job().numpy()
            best = min(best, time.perf_counter() - start)
        out[name] = {"gflops": work / best / 1e9, "seconds": best}
    return out
