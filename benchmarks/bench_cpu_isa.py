"""Which torch CPU library changes which op's bits, and what the CPU pin (pipeline/runtime/cpu_isa.py) costs.

Each setting runs in a fresh child process (the libraries read their variables once, at first use) with the
pin off (HARDSET_CPU_ISA=native) and only the named variables set; the child hashes the forward + backward
bits of the ops the torch stages use and times a conv net and a GEMM-heavy transformer layer (best of 3,
1 thread). Rows: op, then `same` / `DIFF` against the machine's native path per setting; then the timings.
Prints only (the numbers depend on the machine; the README quotes one run).

    .venv/bin/python -m benchmarks.bench_cpu_isa
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.runtime.cpu_isa import PINS

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "native": {},
    "aten=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten=default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "mkl=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "pin (avx2)": PINS["avx2"],
}

CHILD = r"""
import hashlib, json, time, torch, torchaudio
torch.set_num_threads(1)
def digest(*ts):
    return hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in ts)).hexdigest()[:12]
def fwd_bwd(make, x):
    torch.manual_seed(1)
    m = make()
    x = x.clone().requires_grad_(True)
    y = m(x)
    y = y[0] if isinstance(y, tuple) else y
    y.square().sum().backward()
    return digest(y, x.grad, *[p.grad for p in m.parameters()])
g = torch.Generator().manual_seed(0)
rand = lambda *s: torch.randn(*s, generator=g)
x1, x2, xl, xs = rand(4, 16, 800), rand(2, 16, 32, 32), rand(64, 128), rand(4, 4000)
ops = {
    "conv1d": fwd_bwd(lambda: torch.nn.Conv1d(16, 32, 7, padding=3), x1),
    "conv_transpose1d": fwd_bwd(lambda: torch.nn.ConvTranspose1d(16, 8, 8, stride=4), x1),
    "conv2d": fwd_bwd(lambda: torch.nn.Conv2d(16, 16, 3, padding=1), x2),
    "linear": fwd_bwd(lambda: torch.nn.Linear(128, 256), xl),
    "lstm": fwd_bwd(lambda: torch.nn.LSTM(16, 16, 2), x1.permute(2, 0, 1)[:100]),
    "gru": fwd_bwd(lambda: torch.nn.GRU(16, 16), x1.permute(2, 0, 1)[:100]),
    "groupnorm": fwd_bwd(lambda: torch.nn.GroupNorm(4, 16), x2),
    "softmax": fwd_bwd(lambda: torch.nn.Softmax(-1), x2),
    "silu/elu": fwd_bwd(lambda: torch.nn.Sequential(torch.nn.SiLU(), torch.nn.ELU()), x2),
    "sum/exp": digest(x2.sum(dim=(1, 2, 3)), x2.exp()),
}
win = torch.hann_window(512)
spec = torch.stft(xs, 512, 128, window=win, return_complex=True)
ops["stft/istft"] = digest(torch.view_as_real(spec), torch.istft(spec, 512, 128, window=win))
ops["melspec"] = digest(torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, hop_length=256, n_mels=80)(xs))
ops["pinv/matmul"] = digest(torch.linalg.pinv(rand(80, 257)), rand(257, 80) @ rand(80, 60))
net = torch.nn.Sequential(torch.nn.Conv1d(80, 32, 7, padding=3), torch.nn.LeakyReLU(0.1),
                          torch.nn.ConvTranspose1d(32, 16, 16, 8, padding=4)).eval()
with torch.no_grad():
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, torch.zeros(1, 80, 16))))
    ops["frozen jit conv"] = digest(frozen(rand(2, 80, 50)))
def best_ms(fn, n=3):
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return round(min(times) * 1000, 1)
conv = torch.nn.Sequential(torch.nn.Conv1d(1, 32, 7, padding=3), torch.nn.ELU(), torch.nn.Conv1d(32, 64, 8, stride=4),
                           torch.nn.ELU(), torch.nn.Conv1d(64, 128, 8, stride=4), torch.nn.ELU())
wave = torch.randn(8, 1, 16000)
layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, batch_first=True).eval()
tokens = torch.randn(2, 100, 768)
def transformer():
    with torch.no_grad():
        layer(tokens)
ops["ms conv1d net f+b"] = best_ms(lambda: conv(wave).square().mean().backward())
ops["ms transformer768 fwd"] = best_ms(transformer)
ops["capability"] = torch.backends.cpu.get_cpu_capability()
print(json.dumps(ops))
"""


def run_setting(env_vars: dict[str, str]) -> dict:
    """The child's op hashes and timings under the given variables (pin off, nothing else inherited)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    env.update({"HARDSET_CPU_ISA": "native", "OMP_WAIT_POLICY": "PASSIVE", **env_vars})
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cpu_isa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                        help="settings to run (native, the reference, always runs)")
    names = ["native", *(n for n in parser.parse_args(argv).settings if n != "native")]
    results = {name: run_setting(SETTINGS[name]) for name in names}
    base = results["native"]
    print(f"{'op':22}" + "".join(f"{n:>16}" for n in names))
    for op, value in base.items():
        if op.startswith("ms ") or op == "capability":
            cells = [str(results[n][op]) for n in names]
        else:
            cells = ["same" if results[n][op] == value else "DIFF" for n in names]
        print(f"{op:22}" + "".join(f"{c:>16}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
