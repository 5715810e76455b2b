"""Where a model's arrays live and compute: the host (NumPy) or an NVIDIA GPU (CuPy).

A `Backend` is chosen once per run (`training.device`, `--device`) and handed
to the model, which hands it to every layer (`layer.xp`). Layers, losses,
regularizers and first-order optimizers call `xp.<function>` on the arrays
they are given, so the same code runs on either module; code that receives
arrays without a layer (losses, special functions) asks `xp_of(array)`.

What stays on the host, whatever the device: random numbers (NumPy
generators, so seeds mean the same everywhere and exact resume keeps
working; a draw is uploaded), checkpoints (`to_host`, so a GPU checkpoint
evaluates on a CPU), data loading and augmentation, and the full-batch
minimisers' float64 linear algebra. CuPy is imported only when a GPU is asked
for, so a machine without it never pays for it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

CUPY_HINT = "pip install 'nncli[gpu-cuda12]' or 'nncli[gpu-cuda13]', the CuPy wheel for the machine's CUDA"

_MODULES: dict[type, Any] = {}  # device array type -> its array module, for xp_of


@dataclass(frozen=True)
class Backend:
    """An array module and how arrays cross between it and the host.

    `device` is "cpu" or "gpu"; `description` names the hardware for people
    ("NVIDIA H200 (cupy 14.2.0)"); `xp` is numpy or a module with CuPy's
    interface (asarray, asnumpy, ndarray and NumPy's functions).
    """

    device: str
    xp: Any
    description: str

    def __post_init__(self) -> None:
        if self.xp is not np:
            _MODULES[self.xp.ndarray] = self.xp

    @property
    def on_host(self) -> bool:
        return self.xp is np

    def to_device(self, a):
        """The array on this backend (no copy when it is there already); array-likes (an npy source's rows) are
        read whole first."""
        if self.on_host or isinstance(a, self.xp.ndarray):
            return a
        return self.xp.asarray(a if isinstance(a, np.ndarray) else np.asarray(a))


CPU = Backend("cpu", np, f"CPU (numpy {np.__version__})")


def xp_of(a) -> Any:
    """The array module of an array: numpy for host arrays and scalars, the GPU module for its arrays."""
    return _MODULES.get(type(a), np)


def for_model(model, a):
    """a on the device `model` computes on (models without a backend compute on the host)."""
    backend = getattr(model, "backend", None)
    return a if backend is None else backend.to_device(a)


def fetch(*values) -> list[float]:
    """Scalars (Python, NumPy or 0-d device arrays) as Python floats, with one device->host copy for all the
    device ones: a training step reads its loss, finiteness flags and correct count this way."""
    device = [i for i, v in enumerate(values) if type(v) in _MODULES]
    out = [float(v) if i not in device else 0.0 for i, v in enumerate(values)]
    if device:
        module = _MODULES[type(values[device[0]])]
        host = module.asnumpy(module.stack([module.asarray(values[i], dtype=np.float64) for i in device]))
        for i, value in zip(device, host.tolist()):
            out[i] = value
    return out


def to_host(a):
    """Any array (host or device) as host NumPy; other values unchanged."""
    module = _MODULES.get(type(a))
    return a if module is None else module.asnumpy(a)


def detect_gpu(import_module=importlib.import_module) -> tuple[Any | None, str]:
    """(cupy, "NVIDIA H200 (cupy 14.2.0)") when a CUDA GPU is usable, else (None, why not).

    Usable means more than importable: CuPy imports on machines without a
    driver, so a device is counted and one kernel is compiled and run (which
    also catches a missing NVRTC or CUDA toolkit).
    """
    try:
        cupy = import_module("cupy")
    except ImportError:
        return None, f"CuPy is not installed ({CUPY_HINT})"
    except Exception as exc:  # a broken install (missing shared libraries) fails at import
        return None, f"CuPy does not import ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, or a driver older than the runtime
        return None, f"no usable CUDA driver ({type(exc).__name__}: {exc})"
    if count == 0:
        return None, "no CUDA device"
    try:
        value = float((cupy.arange(4, dtype=cupy.float32) ** 2).sum())
        if value != 14.0:
            return None, f"the GPU computed 0²+1²+2²+3² as {value}"
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as exc:  # CompileException, missing libraries, out of memory
        return None, f"no usable CUDA GPU ({type(exc).__name__}: {exc})"
    name = props["name"].decode() if isinstance(props.get("name"), bytes) else str(props.get("name", "CUDA GPU"))
    more = f", 1 of {count}" if count > 1 else ""
    return cupy, f"{name} (cupy {cupy.__version__}{more})"


def backend_for(device: str, notice=None) -> Backend:
    """The backend a device name (training.device: cpu, gpu or auto) asks for: cpu; gpu (ConfigError with the
    reason when none is usable); auto (a usable GPU, else the CPU; `notice(line)` says which)."""
    if device == "cpu":
        return CPU
    module, why = detect_gpu()
    if module is None:
        if device == "gpu":
            raise ConfigError(f"no usable GPU: {why}", ("training", "device"))
        if notice is not None:
            notice(f"device auto: the CPU ({why})")
        return CPU
    backend = Backend("gpu", module, why)
    if device == "auto" and notice is not None:
        notice(f"device auto: the GPU, {why}")
    return backend


def devices() -> list[dict]:
    """What `nncli devices` lists: each device kind, whether it is usable, and what it is or why not."""
    module, why = detect_gpu()
    return [
        {"device": "cpu", "usable": True, "description": CPU.description},
        {"device": "gpu", "usable": module is not None, "description": why},
    ]
