"""Where and how the stages run: the CPU kernel pin (cpu_isa), torch devices, threads and precision (devices),
and the per-clip batch engine, local or Ray Data (engine).

Imports nothing itself: `python -m pipeline` imports `pipeline.runtime.cpu_isa` before torch is loaded, and the
torch-free stages import only the engine.
"""
