"""Training-set samplers over teacher embeddings: neural-collapse class-mean selection and baselines.

`nc_select` is the method (pipeline/sampling/nc.py; its block arithmetic, shared with the streamed path of
streaming.py, is kernel.py's); `order_select` (its farthest and stratified orders), `margin_select` and
`generator_balanced_select` pick the atypical or least-sure rows and spread the fakes over generators
(methods.py, on the orders of orders.py); `random_select`, `full_select`, `kcenter_select` and
`farthest_select` are the baselines (baselines.py); `nc1` and friends are diagnostics (diagnostics.py); the
quota maths (ratios per class, rows kept) is quotas.py's.
`SAMPLERS` maps each `sample.method` name to its function. Imports faiss only when a function runs.
"""

from pipeline.sampling.baselines import farthest_select, full_select, kcenter_select, random_select
from pipeline.sampling.diagnostics import counts, mean_distances, nc1
from pipeline.sampling.methods import generator_balanced_select, margin_select, order_select
from pipeline.sampling.nc import NCRanking, check_inputs, nc_rank, nc_select, select_from_ranking
from pipeline.sampling.quotas import check_ratio, class_ratios, n_keep_for, proportional_quotas

SAMPLERS = {
    "nc": nc_select,
    "random": random_select,
    "full": full_select,
    "kcenter": kcenter_select,
    "farthest": farthest_select,
}

__all__ = [
    "NCRanking", "SAMPLERS", "check_inputs", "check_ratio", "class_ratios", "counts", "farthest_select",
    "full_select", "generator_balanced_select", "kcenter_select", "margin_select", "mean_distances", "n_keep_for",
    "nc1", "nc_rank", "nc_select", "order_select", "proportional_quotas", "random_select", "select_from_ranking",
]
