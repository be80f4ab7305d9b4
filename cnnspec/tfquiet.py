"""Import TensorFlow without its start-up noise.

TensorFlow's C++ start-up writes INFO lines (oneDNN, missing CUDA drivers, CPU features) to
file descriptor 2 before its logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot silence
them. The CLI imports TensorFlow once through :func:`import_tensorflow`, which captures fd 2
meanwhile and passes on every line that is not known start-up noise.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} |W\d{4} .*(cuda|cudart|gpu_device)"
    r"|E\d{4} .*(cuda_platform|cuda_dnn|cuda_blas|cuda_fft|cuInit)"
    r"|To enable the following instructions:)"
)


def import_tensorflow() -> None:
    """Import TensorFlow and probe the devices with stderr start-up noise filtered out."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not _NOISE.match(line):
                    print(line, file=sys.stderr)
