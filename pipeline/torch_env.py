"""Torch runtime settings taken from params: device (`auto` = CUDA when present) and threads.

Set once in a stage's `main`, never at import time.
"""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_torch(threads: int, seed: int) -> None:
    """Pin the thread count (a busy neighbour core makes torch far slower) and seed torch."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
    torch.manual_seed(seed)


def setup_torch(params: dict) -> torch.device:
    """Apply params `runtime` (threads, device) and `seed` once, in a stage's main; return the device."""
    runtime = params.get("runtime") or {}
    configure_torch(int(runtime.get("threads", 0) or 0), int(params.get("seed", 0)))
    return resolve_device(runtime.get("device", "auto"))
