"""Torch runtime settings taken from params: device (`auto` = CUDA when present) and threads.

Set once in a stage's `main`, never at import time.
"""

from __future__ import annotations

import contextlib

import torch

from pipeline.params import PRECISIONS, Common, ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; otherwise the named device (a ConfigError when it is absent)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device {name!r} asked for, but no such CUDA GPU is available (use auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} asked for, but MPS is not available (use auto or cpu)")
    return device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def inference_precision(device: str | torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """Autocast for inference on `device`: bf16/fp16 matmuls and convolutions (the GPU path's speed), or
    nothing for fp32, the default, whose outputs are bit-stable (the demo's and the tests' setting)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def configure_torch(threads: int, seed: int) -> None:
    """Pin the thread count (a busy neighbour core makes torch far slower) and seed torch."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
    torch.manual_seed(seed)


def setup_torch(common: Common) -> torch.device:
    """Apply params `runtime` (threads, device) and `seed` once, in a stage's main; return the device."""
    device = resolve_device(common.runtime.device)
    configure_torch(common.runtime.threads, common.seed)
    return device
