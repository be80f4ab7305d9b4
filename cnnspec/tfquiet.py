"""Import TensorFlow (and run its C++ start-ups) without their noise on stderr.

TensorFlow's C++ start-up writes INFO lines (oneDNN, missing CUDA drivers, CPU features) to
file descriptor 2 before its logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot silence
them; LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ when an
interpreter first allocates its tensors. :func:`filtered_stderr` captures fd 2 around such a
call and passes on every line that is not known noise. The CLI imports TensorFlow once, through
:func:`import_tensorflow`, after the checks that need no TensorFlow (a refusal costs
milliseconds, not the 5 s import).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} |W\d{4} .*(cuda|cudart|gpu_device)"
    r"|E\d{4} .*(cuda_platform|cuda_dnn|cuda_blas|cuda_fft|cuInit)"
    r"|To enable the following instructions:)"
)
#: LiteRT's (and tf.lite's) line on every interpreter's first allocation.
TFLITE_NOISE = re.compile(r"^INFO: Created TensorFlow Lite (XNNPACK )?delegate for CPU\.")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = _NOISE) -> Iterator[None]:
    """Capture file descriptor 2 in the block; afterwards write back every line not ``noise``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (a daemon): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not noise.match(line):
                    print(line, file=sys.stderr)


def import_tensorflow() -> None:
    """Import TensorFlow and probe the devices with stderr start-up noise filtered out."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr(_NOISE):
        import tensorflow as tf

        tf.config.list_physical_devices()
