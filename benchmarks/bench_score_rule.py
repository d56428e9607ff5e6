"""EER of one model under two score rules, from one pass of logits: hardset's one rule, logit[bonafide] -
logit[spoof], and the official AASIST code's logit[bonafide] alone (what the imported AASIST scored by before).

Sets, from the clip tables: bona fide test clips against the test-split spoofs (`test_spoofs`), against the spoofs
of every `eval:*` split without bona fide rows of its own (`eval_spoofs`), and both (`pooled`); each EER with its
95% bootstrap CI over clips (pipeline.metrics, 1000 resamples, seed 1234). Each clip is its first `eval_s` seconds
(the model's, tiled when shorter), as score and evaluate read it. Rows merged into reports/bench.json under
"score_rule" (with the 1-minute load average: this machine is shared).

    .venv/bin/python -m pipeline import_model --arch aasist --checkpoint AASIST.pth --out data/imported/aasist
    .venv/bin/python -m benchmarks.bench_score_rule --model data/imported/aasist --clips data/clips.parquet
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import pipeline.__main__  # noqa: F401  the CPU pin of every stage, before torch runs
from benchmarks.common import merge_bench, print_table
from pipeline.detector.inference import load_waves
from pipeline.metrics import bootstrap_eer_ci, compute_eer
from pipeline.models import DEFAULT_EVAL_S, load_checkpoint
from pipeline.schema import read_clip_tables

RULES = {"logit[bonafide] - logit[spoof] (hardset)": lambda z: z[:, 1] - z[:, 0],
         "logit[bonafide] (AASIST authors)": lambda z: z[:, 1]}


def eval_sets(clips) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{set: (bona fide mask, spoof mask)} over `clips` (see the module docstring)."""
    split, label = clips["split"].astype(str), clips["label"]
    own_bona = {s for s in split[label == "bonafide"] if s.startswith("eval:")}
    bona = ((split == "test") & (label == "bonafide")).to_numpy()
    test_spoofs = ((split == "test") & (label == "spoof")).to_numpy()
    eval_spoofs = (split.str.startswith("eval:") & ~split.isin(own_bona) & (label == "spoof")).to_numpy()
    return {"test_spoofs": (bona, test_spoofs), "eval_spoofs": (bona, eval_spoofs),
            "pooled": (bona, test_spoofs | eval_spoofs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder (import_model, train or pretrain output)")
    parser.add_argument("--clips", nargs="+", required=True, help="clip tables (data/clips.parquet, ...)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, config = load_checkpoint(args.model)
    clips = read_clip_tables(args.clips, stage="bench_score_rule")
    masks = eval_sets(clips)
    keep = np.any([b | s for b, s in masks.values()], axis=0)
    rows = clips[keep].reset_index(drop=True)
    t0 = time.perf_counter()
    ids, waves, _, rejects = load_waves(rows, int(config["sample_rate"]), float(config.get("eval_s", DEFAULT_EVAL_S)),
                                        stage="bench_score_rule")
    with torch.no_grad():
        logits = torch.cat([model(waves[i:i + args.batch_size]) for i in range(0, len(waves), args.batch_size)])
    seconds = time.perf_counter() - t0
    order = rows.set_index("clip_id").index.get_indexer(ids)  # rejected clips drop out of every set
    out = []
    for rule, score in RULES.items():
        s = score(logits).double().numpy()
        for name, (bona, spoof) in masks.items():
            b, f = s[bona[keep][order]], s[spoof[keep][order]]
            eer, _ = compute_eer(b, f)
            lo, hi = bootstrap_eer_ci(b, f, n_boot=1000, seed=1234)
            out.append({"rule": rule, "set": name, "eer_pct": 100 * eer, "lo_pct": 100 * lo, "hi_pct": 100 * hi,
                        "n_bonafide": int(b.size), "n_spoof": int(f.size)})
    print_table(out, f"{args.model}: {len(ids)} clips ({len(rejects)} rejected) in {seconds:.0f} s")
    merge_bench("score_rule", out, model=str(args.model), load_1min=os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
