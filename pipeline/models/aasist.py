"""AASIST and AASIST-L (Jung et al., ICASSP 2022): raw-waveform spoofing detectors with graph attention.

Layout (one module per block of the paper, parameter names as in the official checkpoints of
clovaai/aasist, so that `models/weights/AASIST*.pth` load with a strict key and shape match):
- a fixed sinc band-pass filter bank (mel-spaced, Hamming-windowed, not learned) on the 16 kHz
  waveform, then |.|, 3x3 max pooling, batch norm and SELU -> a [B, 1, 23, T/3] "spectrogram";
- a residual encoder of six blocks (2x3 convolutions, 1x3 max pooling in time);
- graph attention over spectral nodes (max over time + positional embedding) and over temporal
  nodes (max over frequency), each followed by a top-k graph pooling;
- two parallel branches of heterogeneous stacking graph attention (HS-GAL, two layers each) over
  the union of both node types plus a learned master node; the element-wise max of both branches;
- the readout [max|T|, mean T, max|S|, mean S, master] (5 x gat_dims[1]) -> a 2-way linear layer.

Class order: index 0 = spoof, 1 = bona fide, as in the authors' code. Their score is logit[1]; this project
scores every model by logit[1] - logit[0] (pipeline.models.bonafide_score), the logits being the authors'.
Faithful to the released code where it departs from the paper: each residual block's `bn1` exists
(and is loaded) but its output is never used, and the HS-GAL master node is the unexpanded parameter.

Eval-mode speed (the inference path, `fast` in the config, on by default): each encoder `bn2` is
folded into the preceding `conv1`, the encoder runs channels-last, the batch goes through the
encoder in chunks of `chunk` clips, and the sinc front end + the first `tiled_blocks` blocks run in
time tiles of `tile` output frames, so the [chunk, 32, 24, 21490] maps of the first block never
leave the cache. Outputs equal the plain path within float32 rounding (tested at 1e-4).
The same path serves a frozen encoder in eval mode while the graph part trains (train.init_mode backend).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import Detector, resolve_config

AASIST_DEFAULTS: dict[str, Any] = {
    "frontend": "sinc",
    "sample_rate": 16000,
    "nb_samp": 64600,           # the authors' input length (4.0375 s at 16 kHz)
    "first_conv": 128,          # sinc filter length (made odd: 129 taps)
    "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
    "fast": True,               # eval-mode fused/chunked path (same outputs)
    "chunk": 2,                 # clips per chunk through the front end and encoder in eval mode
    "tiled_blocks": 2,          # eval mode: the front end and this many encoder blocks run in time tiles
    "tile": 512,                # ... of this many output frames of the last tiled block
}
AASIST_L_DEFAULTS: dict[str, Any] = {
    **AASIST_DEFAULTS,
    "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
    "gat_dims": [24, 32],
    "pool_ratios": [0.4, 0.5, 0.7, 0.5],
}
N_SPECTRAL_NODES = 23  # 70 sinc bands // 3 (the 3x3 max pooling): the size of pos_S


def sinc_filters(n_filters: int, length: int, sample_rate: int) -> torch.Tensor:
    """Mel-spaced ideal band-pass filters [n_filters, 1, taps] (taps = length made odd), Hamming-windowed."""
    taps = length + 1 if length % 2 == 0 else length
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    to_hz = lambda mel: 700.0 * (10.0 ** (mel / 2595.0) - 1.0)  # noqa: E731
    # Band edges: equally spaced on the mel scale between 0 Hz and Nyquist.
    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sample_rate / 2.0), n_filters + 1))
    t = np.arange(-(taps - 1) / 2, (taps - 1) / 2 + 1, dtype=np.float32).astype(np.float64)
    lowpass = lambda fc: (2.0 * fc / sample_rate) * np.sinc(2.0 * fc * t / sample_rate)  # noqa: E731
    bank = np.stack([(lowpass(hi) - lowpass(lo)) * np.hamming(taps) for lo, hi in zip(edges[:-1], edges[1:])])
    return torch.from_numpy(bank.astype(np.float32)).unsqueeze(1)


class ResBlock(nn.Module):
    """Two 2x3 convolutions with batch norm and SELU between, a (projected) shortcut, 1x3 max pooling.

    `bn1` is kept for the checkpoint layout only: the released model never applies it.
    """

    def __init__(self, c_in: int, c_out: int, first: bool, pool: int = 3) -> None:
        super().__init__()
        self.pool = pool
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, (2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, (2, 3), padding=(0, 1))
        if c_in != c_out:
            self.conv_downsample = nn.Conv2d(c_in, c_out, (1, 3), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.selu(self.bn2(self.conv1(x))))
        y = y + (self.conv_downsample(x) if hasattr(self, "conv_downsample") else x)
        return F.max_pool2d(y, (1, self.pool)) if self.pool > 1 else y

    def folded_conv1(self) -> tuple[torch.Tensor, torch.Tensor]:
        """conv1 with the eval-mode bn2 folded in: bn2(conv1(x)) == conv(x, w, b)."""
        bn = self.bn2
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = self.conv1.weight * scale[:, None, None, None]
        b = (self.conv1.bias - bn.running_mean) * scale + bn.bias
        return w.detach(), b.detach()

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Eval forward on channels-last maps [B, C, H, W] (bn2 folded into conv1, time pooling as a reshape)."""
        return _pool_time3(self.convs_fast(x))

    def convs_fast(self, x: torch.Tensor) -> torch.Tensor:
        """forward_fast before the time pooling: [B, C_out, H, W] (same W as x)."""
        w1, b1 = self.folded_conv1()
        if x.shape[1] == 1:
            return self._convs_fast_mono(x, w1, b1)
        y = F.selu(F.conv2d(x, w1.contiguous(memory_format=torch.channels_last), b1, padding=(1, 1)), inplace=True)
        y = self.conv2(y)
        return y.add_(self.conv_downsample(x) if hasattr(self, "conv_downsample") else x)

    def _convs_fast_mono(self, x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
        """First block (one input channel): conv1 as a 6-tap matmul straight into channels-last, and the
        1x3 shortcut convolution folded into conv2 as a 33rd input channel (tap (1, 1) of conv1's window)."""
        _, _, h, w = x.shape
        c = w1.shape[0]
        xp = F.pad(x[:, 0], (1, 1, 1, 1))                                                     # [B, H+2, W+2]
        taps = torch.stack([xp[:, i:i + h + 1, j:j + w] for i in range(2) for j in range(3)], dim=-1)
        w_taps = torch.cat([w1.reshape(c, 6).t(), F.one_hot(torch.tensor(4), 6).to(w1).unsqueeze(1)], dim=1)
        z = torch.matmul(taps, w_taps)                                                        # [B, H+1, W, c+1]
        z[..., :c] += b1
        F.selu(z[..., :c], inplace=True)
        down = self.conv_downsample.weight                                                    # [c, 1, 1, 3]
        w2 = torch.cat([self.conv2.weight, torch.cat([down, torch.zeros_like(down)], dim=2)], dim=1)
        return F.conv2d(z.permute(0, 3, 1, 2), w2.contiguous(memory_format=torch.channels_last),
                        self.conv2.bias + self.conv_downsample.bias, padding=(0, 1))


def _pool_time3(y: torch.Tensor) -> torch.Tensor:
    """max_pool2d(y, (1, 3)) of a channels-last map, as a reshape and a max (keeps channels-last)."""
    b, c, h, w = y.shape
    nhwc = y.permute(0, 2, 3, 1)[:, :, :w - w % 3]
    return nhwc.reshape(b, h, w // 3, 3, c).amax(dim=3).permute(0, 3, 1, 2)


def _block_input_range(lo: int, hi: int, width: int) -> tuple[int, int]:
    """Input frames [lo', hi') a residual block needs for its pooled output frames [lo, hi) (input width `width`).

    Two 1x3 convolutions reach 2 frames beyond the 3 frames each pooled output covers. At the clip's ends
    the clipped range meets the convolutions' own zero padding, so the tile equals the whole-clip result.
    """
    return max(0, 3 * lo - 2), min(width, 3 * hi + 2)


def _batch_norm_nodes(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Batch norm over every node of every graph: [B, N, D] viewed as [B*N, D]."""
    return bn(x.reshape(-1, x.shape[-1])).view(x.shape)


def _new_weight(*size: int) -> nn.Parameter:
    w = nn.Parameter(torch.empty(*size))
    nn.init.xavier_normal_(w)
    return w


class GraphAttention(nn.Module):
    """Graph attention over one node type: attention from tanh(W(x_i * x_j)) . w, softmax over j / temperature."""

    def __init__(self, d_in: int, d_out: int, temperature: float) -> None:
        super().__init__()
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_weight = _new_weight(d_out, 1)
        self.proj_with_att = nn.Linear(d_in, d_out)
        self.proj_without_att = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.input_drop = nn.Dropout(0.2)
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(x)
        pair = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))         # [B, N, N, d_out]
        att = torch.softmax((pair @ self.att_weight).squeeze(-1) / self.temperature, dim=-1)
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        return F.selu(_batch_norm_nodes(self.bn, out))


class HeteroGraphAttention(nn.Module):
    """HS-GAL: attention over two node types (type-pair specific weights) plus a master node that attends to all."""

    def __init__(self, d_in: int, d_out: int, temperature: float) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(d_in, d_in)
        self.proj_type2 = nn.Linear(d_in, d_in)
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_projM = nn.Linear(d_in, d_out)
        self.att_weight11 = _new_weight(d_out, 1)
        self.att_weight22 = _new_weight(d_out, 1)
        self.att_weight12 = _new_weight(d_out, 1)  # both cross-type blocks share it
        self.att_weightM = _new_weight(d_out, 1)
        self.proj_with_att = nn.Linear(d_in, d_out)
        self.proj_without_att = nn.Linear(d_in, d_out)
        self.proj_with_attM = nn.Linear(d_in, d_out)
        self.proj_without_attM = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.input_drop = nn.Dropout(0.2)
        self.temperature = float(temperature)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor,
                master: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1 = x1.shape[1]
        x = self.input_drop(torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1))   # [B, N, d_in]
        n = x.shape[1]
        pair = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))                  # [B, N, N, d_out]
        w = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)    # [d_out, 3]
        logits3 = pair @ w                                                                 # [B, N, N, 3]
        kind = torch.full((n, n), 2, dtype=torch.long, device=x.device)  # which weight each node pair uses
        kind[:n1, :n1], kind[n1:, n1:] = 0, 1
        logits = logits3.gather(-1, kind.expand(x.shape[0], n, n).unsqueeze(-1)).squeeze(-1)
        att = torch.softmax(logits / self.temperature, dim=-1)
        # master node: attention over all nodes from tanh(W(x_i * master)) . w_M
        m_att = torch.softmax((torch.tanh(self.att_projM(x * master)) @ self.att_weightM) / self.temperature, dim=1)
        master = self.proj_with_attM(m_att.transpose(1, 2) @ x) + self.proj_without_attM(master)
        out = self.proj_with_att(att @ x) + self.proj_without_att(x)
        out = F.selu(_batch_norm_nodes(self.bn, out))
        return out[:, :n1], out[:, n1:], master


class GraphPool(nn.Module):
    """Top-k graph pooling: keep the max(1, int(k N)) nodes of highest sigmoid score, scaled by that score."""

    def __init__(self, ratio: float, d_in: int, p: float = 0.3) -> None:
        super().__init__()
        self.ratio = float(ratio)
        self.proj = nn.Linear(d_in, 1)
        self.drop = nn.Dropout(p)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))                      # [B, N, 1]
        k = max(int(h.shape[1] * self.ratio), 1)
        idx = torch.topk(scores, k, dim=1).indices.expand(-1, -1, h.shape[2])
        return torch.gather(h * scores, 1, idx)


class AASIST(Detector):
    """AASIST on the raw waveform [B, T] (T = nb_samp = 64,600 samples at 16 kHz in the authors' setup)."""

    arch = "aasist"
    defaults: dict[str, Any] = AASIST_DEFAULTS

    def __init__(self, config: dict[str, Any]) -> None:
        nn.Module.__init__(self)
        c = resolve_config(type(self), config)
        filts, gat, pools, temps = c["filts"], c["gat_dims"], c["pool_ratios"], c["temperatures"]
        c["embedding_dim"] = 5 * int(gat[1])
        c["frontend"] = "sinc"
        self.config = c
        self.register_buffer("sinc", sinc_filters(int(filts[0]), int(c["first_conv"]), int(c["sample_rate"])),
                             persistent=False)
        self.first_bn = nn.BatchNorm2d(1)
        stages = [filts[1], filts[2], filts[3], filts[4], filts[4], filts[4]]
        self.encoder = nn.Sequential(*[nn.Sequential(ResBlock(int(a), int(b), first=k == 0))
                                       for k, (a, b) in enumerate(stages)])
        c_enc = int(filts[-1][-1])
        build_graph(self, c_enc, int(filts[0]) // 3, gat, pools, temps)
        self.layer_names = ["encoder", "gat_s", "gat_t"]
        self._dims = {"encoder": c_enc, "gat_s": int(gat[0]), "gat_t": int(gat[0])}

    @property
    def embedding_dim(self) -> int:
        return int(self.config["embedding_dim"])

    def layer_dims(self) -> dict[str, int]:
        return {**self._dims, "penultimate": self.embedding_dim}

    # -- front end and encoder ------------------------------------------------------------------
    def _front(self, wave: torch.Tensor) -> torch.Tensor:
        """Sinc filter bank -> |.| -> 3x3 max pool -> batch norm -> SELU: [B, 1, 23, frames]."""
        x = F.conv1d(wave.unsqueeze(1), self.sinc)                     # [B, 70, T - 128]
        x = F.max_pool2d(x.abs().unsqueeze(1), (3, 3))
        return F.selu(self.first_bn(x))

    def _encode_plain(self, wave: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._front(wave))

    def _encode_fast(self, wave: torch.Tensor) -> torch.Tensor:
        n_tiled = min(int(self.config["tiled_blocks"]), len(self.encoder))
        outs = []
        for part in wave.split(max(1, int(self.config["chunk"]))):
            x, n_done = self._front_and_blocks_tiled(part, n_tiled)
            for stage in list(self.encoder)[n_done:]:
                x = stage[0].forward_fast(x)
            outs.append(x.contiguous())
        return torch.cat(outs)

    def _front_and_blocks_tiled(self, wave: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor, int]:
        """Sinc front end + the first `n_blocks` encoder blocks, in time tiles of `tile` output frames; returns the
        map and the number of blocks applied (0, the front end alone, for n_blocks 0 or a clip too short to tile).

        The high-resolution maps ([B, 32, 24, 21490] in block 1) are the cost: whole-clip they stream through
        main memory, per tile they stay in cache. Each tile reads the frames its output depends on (a few
        frames of overlap) and keeps only its exact output, so the result equals the untiled path.
        """
        widths = [(wave.shape[1] - self.sinc.shape[-1] + 1) // 3]   # front-end frames, then each block's output
        for _ in range(n_blocks):
            widths.append(widths[-1] // 3)
        if n_blocks == 0 or widths[-1] < 1:
            return self._front(wave), 0
        blocks = [stage[0] for stage in list(self.encoder)[:n_blocks]]
        tile = max(1, int(self.config["tile"]))
        outs = []
        for start in range(0, widths[-1], tile):
            ranges = [(start, min(widths[-1], start + tile))]          # frames wanted at each level, last first
            for level in range(n_blocks, 0, -1):
                ranges.append(_block_input_range(*ranges[-1], widths[level - 1]))
            ranges.reverse()
            f0, f1 = ranges[0]                                       # front frame f covers samples 3f .. 3f+3+taps-1
            x = self._front(wave[:, 3 * f0:3 * f1 + self.sinc.shape[-1] - 1])
            for k, block in enumerate(blocks):
                (lo, _), (out_lo, out_hi) = ranges[k], ranges[k + 1]
                x = _pool_time3(block.convs_fast(x)[..., 3 * out_lo - lo:3 * out_hi - lo])
            outs.append(x)
        return torch.cat(outs, dim=3), n_blocks

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, C, 23, frames] of a waveform batch [B, T]."""
        if wave.dim() != 2:
            raise ValueError(f"{self.arch} expects a waveform batch [B, T], got shape {tuple(wave.shape)}")
        trainable = any(q.requires_grad for q in self.encoder.parameters())
        frozen = not self.encoder.training and not trainable
        # the fast path detaches its folded weights: only where no encoder gradient is wanted (inference, or a
        # frozen encoder); an eval-mode model trained with gradients (e.g. BN statistics kept) takes the plain path
        no_grad_wanted = not torch.is_grad_enabled() or not trainable
        if self.config["fast"] and ((not self.training and no_grad_wanted) or frozen):
            return self._encode_fast(wave.float())
        return self._encode_plain(wave.float())

    def forward_with_features(self, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return graph_forward(self, self.encode(wave))


def build_graph(m: nn.Module, c_enc: int, n_spectral: int, gat: list, pools: list, temps: list) -> None:
    """Register AASIST's graph back end on module `m` (names as in the official checkpoints)."""
    m.pos_S = nn.Parameter(torch.randn(1, n_spectral, c_enc))
    m.master1 = nn.Parameter(torch.randn(1, 1, int(gat[0])))
    m.master2 = nn.Parameter(torch.randn(1, 1, int(gat[0])))
    m.GAT_layer_S = GraphAttention(c_enc, int(gat[0]), temps[0])
    m.GAT_layer_T = GraphAttention(c_enc, int(gat[0]), temps[1])
    m.HtrgGAT_layer_ST11 = HeteroGraphAttention(int(gat[0]), int(gat[1]), temps[2])
    m.HtrgGAT_layer_ST12 = HeteroGraphAttention(int(gat[1]), int(gat[1]), temps[2])
    m.HtrgGAT_layer_ST21 = HeteroGraphAttention(int(gat[0]), int(gat[1]), temps[2])
    m.HtrgGAT_layer_ST22 = HeteroGraphAttention(int(gat[1]), int(gat[1]), temps[2])
    m.pool_S = GraphPool(pools[0], int(gat[0]))
    m.pool_T = GraphPool(pools[1], int(gat[0]))
    for name in ("pool_hS1", "pool_hT1", "pool_hS2", "pool_hT2"):
        setattr(m, name, GraphPool(pools[2], int(gat[1])))
    m.drop_way = nn.Dropout(0.2)
    m.drop = nn.Dropout(0.5)
    m.out_layer = nn.Linear(5 * int(gat[1]), 2)


def _branch(m: nn.Module, out_T: torch.Tensor, out_S: torch.Tensor, master: torch.Tensor, k: int):
    first, second = getattr(m, f"HtrgGAT_layer_ST{k}1"), getattr(m, f"HtrgGAT_layer_ST{k}2")
    t, s, mm = first(out_T, out_S, master)
    s = getattr(m, f"pool_hS{k}")(s)
    t = getattr(m, f"pool_hT{k}")(t)
    t_aug, s_aug, m_aug = second(t, s, mm)
    return m.drop_way(t + t_aug), m.drop_way(s + s_aug), m.drop_way(mm + m_aug)


def graph_forward(m: nn.Module, e: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits [B, 2] and pooled features of an encoder map e [B, C, F, T] through m's graph back end."""
    e = e.abs()
    nodes_S = e.amax(dim=3).transpose(1, 2) + m.pos_S                 # spectral nodes [B, F, C]
    nodes_T = e.amax(dim=2).transpose(1, 2)                           # temporal nodes [B, T, C]
    out_S = m.pool_S(m.GAT_layer_S(nodes_S))
    out_T = m.pool_T(m.GAT_layer_T(nodes_T))
    t1, s1, m1 = _branch(m, out_T, out_S, m.master1, 1)
    t2, s2, m2 = _branch(m, out_T, out_S, m.master2, 2)
    t, s, mx = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
    hidden = torch.cat([t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1), mx.squeeze(1)],
                       dim=1)
    feats = {"encoder": e.mean(dim=(2, 3)), "gat_s": out_S.mean(dim=1), "gat_t": out_T.mean(dim=1),
             "penultimate": hidden}
    return m.out_layer(m.drop(hidden)), feats


class AASISTL(AASIST):
    """AASIST-L: the light configuration (85k parameters)."""

    arch = "aasist-l"
    defaults: dict[str, Any] = AASIST_L_DEFAULTS
