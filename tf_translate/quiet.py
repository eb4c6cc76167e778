"""Keeping TensorFlow's and LiteRT's C++ log lines (CUDA probing on a machine without GPUs, the
oneDNN notice, the TFLite converter's and XNNPACK's info lines) off the terminal unless
``--verbose``: they print to file descriptor 2 directly, below Python's ``sys.stderr``, and read
like failures. What is caught is shown after all when the work it came with fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

_quiet = False  # set by quiet_tensorflow(): the commands' mode; a library user sees every line


@contextlib.contextmanager
def caught_stderr():
    """Holds back what is written to file descriptor 2 inside the block (by Python or C++) while
    quiet mode is on; writes it out if the block raises."""
    if not _quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow() -> None:
    """Turns quiet mode on and imports TensorFlow without its start-up lines: those its C++
    logging prints before it reads TF_CPP_MIN_LOG_LEVEL are caught while it loads and shown only
    if loading fails; later C++ log lines below fatal are off."""
    global _quiet
    _quiet = True
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with caught_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probing happens here
