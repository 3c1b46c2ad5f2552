"""Where a model runs: the device setting (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) and the precision.

The device is chosen once per process, by :func:`resolve_device`, and the model is placed on it once;
every tensor crosstask makes is created on the model's device and results come back with ``.cpu()``.
For ``cuda:N`` the process's current CUDA device is set to N as well, so that code which asks for
"the" GPU (the transformers Trainer, through accelerate) uses the same one.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import CrosstaskError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


class DeviceError(CrosstaskError):
    """A device setting this machine cannot honour (shown to the user as one line)."""


def check_device_setting(setting: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, setting):
        raise DeviceError(f"device {setting!r}: expected auto, cpu, cuda or cuda:N")
    return setting


def resolve_device(setting: str = "auto"):
    """The ``torch.device`` for a device setting; ``auto`` is the current CUDA device if there is one, else the CPU."""
    import torch

    check_device_setting(setting)
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {setting!r}: no CUDA device is visible to this process "
                          "(torch.cuda.is_available() is False); use device: cpu or auto")
    index = int(setting.split(":")[1]) if ":" in setting else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"device {setting!r}: this process sees {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def planned_dtype(precision: str, device_setting: str) -> str:
    """The dtype name ("bfloat16" or "float32") work on this device setting will use; part of content keys.

    ``auto`` picks bf16 where the hardware is fast at it: a CPU with avx512_bf16 or AMX (measured ~4x
    fp32 matmul here), a GPU that supports it. A ``cuda`` setting on a machine that sees no GPU (the
    driver of a cluster whose workers have them) assumes a bf16-capable GPU.
    """
    if precision in ("bf16", "fp32"):
        return "bfloat16" if precision == "bf16" else "float32"
    import torch

    wants_gpu = device_setting.startswith("cuda") or (device_setting == "auto" and torch.cuda.is_available())
    if wants_gpu:
        return "float32" if torch.cuda.is_available() and not torch.cuda.is_bf16_supported() else "bfloat16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
