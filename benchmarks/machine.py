"""What a benchmark ran on, to commit beside its numbers."""

import os
import platform
import time
from typing import Any

import jax


def machine_info() -> dict[str, Any]:
    """CPU model and count, platform, Python and jax versions, jax's devices and the date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(device) for device in jax.devices()],
        "date": time.strftime("%Y-%m-%d"),
    }
