"""What a benchmark ran on, to commit beside its numbers."""

import os
import platform
import time
from typing import Any

import jax


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return fields


def machine_info() -> dict[str, Any]:
    """CPU model, generation, widest vector extension and count, platform, Python and jax
    versions, jax's devices and the date. A virtual machine may name its CPU only by brand
    ("AMD EPYC"), while the generation behind it changes float32 results in the last bits
    (XLA compiles for the host's vector width) and its speed: both are recorded."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vector = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "")
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
        "cpu_vector": vector,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(device) for device in jax.devices()],
        "date": time.strftime("%Y-%m-%d"),
    }
