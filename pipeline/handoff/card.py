"""The model card of every model folder: MODEL_CARD.md, and the same facts in config.json (`card`, `dev`).

Written by train (the detector, fine-tuned or not), pretrain (the teachers) and import_model (an external
checkpoint); completed by `python -m pipeline export --model DIR --metrics reports/metrics.json --out DIR2`.
The facts: the training manifest and its sha256, the code's git revision, the stage's params, the preprocessing
chain, the init model, the dev EER and threshold (config.json `dev`, which `score --threshold dev` reads), the test
EERs with their 95% CIs, the data's licences (pipeline/handoff/licences.py), intended use and limits.
Test EERs: evaluate writes reports/, never into train's folder (DVC outs cannot overlap), so a card written by
train says `test: not evaluated yet`; the model export copies the folder and fills `test` from evaluate's
metrics.json, number for number. Reads the files it is given; writes MODEL_CARD.md (atomically) only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from pipeline.io import write_text_atomic

CARD_FORMAT = "hardset.model_card/1"
CARD_NAME = "MODEL_CARD.md"
REPO = Path(__file__).resolve().parents[2]  # the checkout whose code is running
NOT_EVALUATED = {"status": "not evaluated yet",
                 "how": "evaluate this model (dvc repro evaluate, for data/models/detector), then python -m pipeline "
                        "export --model <this folder> --metrics <its metrics.json> --out <hand-off folder>: the "
                        "copy's card has the test EERs"}
INTENDED_USE = ("Research on audio anti-spoofing: ranking speech clips by how bona fide they sound (higher score = "
                "more bona fide), as a baseline, a teacher or a starting point for fine-tuning, on 16-bit mono audio "
                "passed through the recorded preprocessing chain (`python -m pipeline score` applies it).")
COMMON_LIMITS = (
    "The score is logit[bonafide] - logit[spoof], the log-odds of the model's own softmax: a ranking, not a "
    "calibrated probability.",
    "The dev threshold is the EER point of the training corpora's dev split; on other data it gives other error "
    "rates: set a threshold on labelled data of the target domain.",
    "EERs hold for the held-out sets they name; other corpora, languages, channels and attack systems are unknown "
    "until measured.",
    "Not for use as the sole evidence in forensic, legal or security decisions: a detector flags audio for review.",
)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def code_revision(repo: Path = REPO) -> dict[str, Any]:
    """{git_revision, pipeline_modified} of the running code; None for both outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    if revision is None:
        return {"git_revision": None, "pipeline_modified": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", "pipeline")
    return {"git_revision": revision, "pipeline_modified": None if status is None else bool(status)}


def data_facts(rows: Any, files: dict[str, str | Path | None]) -> dict[str, Any]:
    """What a model was trained on: the input files with their sha256, counts per split and label, the spoof
    paradigms and systems, the corpora."""
    spoof = rows[rows["label"] == "spoof"]
    counts = {f"{split}_{label}": int(n) for (split, label), n in rows.groupby(["split", "label"]).size().items()}
    return {"files": {k: {"path": str(v), "sha256": file_sha256(v)} for k, v in files.items() if v is not None},
            "clips": dict(sorted(counts.items())), "corpora": sorted(rows["corpus"].astype(str).unique()),
            "paradigms": sorted(spoof["paradigm"].astype(str).unique()),
            "systems": sorted(spoof["system"].astype(str).unique())}


def build_card(kind: str, name: str, model: Any, *, data: dict[str, Any] | None, params: dict[str, Any],
               preprocessing: Any, licences: list[dict], init: dict[str, Any] | None = None,
               eval_s: float | None = None, limits: tuple[str, ...] = ()) -> dict[str, Any]:
    """The card block of config.json (the dev numbers stand beside it, in config.json `dev`)."""
    from pipeline.models import SCORE_RULE

    limits = list(limits) + list(COMMON_LIMITS)
    if any(entry.get("non_commercial") for entry in licences):
        limits.append("Part of the data is licensed for non-commercial use only (see Licences); the model's use "
                      "may be bound by it.")
    return {"format": CARD_FORMAT, "kind": kind, "name": name,
            "model": {"arch": model.arch, "parameters": int(sum(p.numel() for p in model.parameters())),
                      "sample_rate": int(model.config["sample_rate"]), "eval_s": eval_s,
                      "score": f"{SCORE_RULE}, higher = more bona fide"},
            "data": data, "code": code_revision(), "params": params, "preprocessing": preprocessing,
            "init": init, "licences": licences, "test": dict(NOT_EVALUATED),
            "intended_use": INTENDED_USE, "limits": limits}


def init_facts(init: dict[str, Any] | None) -> dict[str, Any] | None:
    """The init block of a fine-tuned model, with the init folder's own licences when its card lists them."""
    if not init:
        return None
    card_file = Path(init["dir"]) / "config.json"
    upstream = []
    if card_file.is_file():
        upstream = (json.loads(card_file.read_text()).get("card") or {}).get("licences") or []
    return {**init, "licences": upstream}


def test_facts(metrics: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The card's test block from evaluate's metrics.json: every set's EER, CI and clip count, as written there."""
    ci = metrics.get("eer_ci") or {}
    sets = {name: {"eer": eer, "lo": (ci.get(name) or {}).get("lo"), "hi": (ci.get(name) or {}).get("hi"),
                   "n_clips": (metrics.get("n_clips") or {}).get(name)} for name, eer in metrics["eer"].items()}
    return {"status": "evaluated", "source": str(source), "sha256": file_sha256(source), "sets": sets,
            "conditions": metrics.get("eer_condition") or {}, "ci": metrics.get("ci")}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f}%"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def _json_block(obj: Any) -> list[str]:
    return ["```json", json.dumps(obj, indent=2, sort_keys=True), "```"]


def render_card(config: dict[str, Any]) -> str:
    """MODEL_CARD.md from a model folder's config.json (its `card` and `dev`)."""
    card, dev = config["card"], config.get("dev") or {}
    m, code = card["model"], card["code"]
    facts = [["architecture", m["arch"]], ["parameters", m["parameters"]], ["sample rate", f"{m['sample_rate']} Hz"],
             ["scored window", f"{m['eval_s']} s"], ["score", m["score"]], ["git revision", code["git_revision"]],
             ["pipeline/ modified", code["pipeline_modified"]]]
    lines = [f"# Model card: {card['name']} ({card['kind']})", "",
             "Written by hardset; the same facts are in config.json (`card`, `dev`).", "",
             *_table(["fact", "value"], facts),
             "", "## Intended use", "", card["intended_use"], "", "## Limits", ""]
    lines += [f"- {text}" for text in card["limits"]]
    lines += ["", "## Training data", ""]
    data = card.get("data")
    if data:
        lines += _table(["input", "path", "sha256"], [[k, v["path"], v["sha256"]] for k, v in data["files"].items()])
        lines += ["", *_table(["split_label", "clips"], [[k, v] for k, v in data["clips"].items()]), "",
                  f"Corpora: {', '.join(data['corpora'])}. Spoof paradigms: {', '.join(data['paradigms'])}. "
                  f"Systems: {', '.join(data['systems'])}."]
    else:
        lines += ["Not trained by hardset: see Params (the source checkpoint and its sha256) and Licences."]
    lines += ["", "## Licences of the data", "",
              *_table(["corpus", "clips", "licence", "non-commercial", "where stated"],
                      [[e["corpus"], e.get("clips", ""), e["licence"], e["non_commercial"], e["url"]]
                       for e in card["licences"]])]
    if card.get("init"):
        lines += ["", "## Initialisation (fine-tuned from)", "", *_json_block(card["init"])]
    lines += ["", "## Dev", "", *_table(["dev EER", "threshold (score > t: bona fide)"],
                                        [[_pct(dev.get("eer")), dev.get("threshold", "n/a")]])]
    lines += ["", "## Test", "", *_test_lines(card["test"])]
    lines += ["", "## Preprocessing", "", *_json_block(card["preprocessing"])]
    lines += ["", "## Params", "", *_json_block(card["params"])]
    return "\n".join(lines) + "\n"


def _test_lines(test: dict[str, Any]) -> list[str]:
    if test.get("status") != "evaluated":
        return [f"{test['status']}: {test.get('how', '')}"]
    rows = [[name, _pct(s["eer"]), f"[{_pct(s['lo'])}, {_pct(s['hi'])}]", s["n_clips"]]
            for name, s in test["sets"].items()]
    rows += [[f"{name} ({condition})", _pct(eer), "", ""] for condition, sets in sorted(test["conditions"].items())
             for name, eer in sets.items()]
    ci = test.get("ci") or {}
    return [f"From {test['source']} (sha256 {test['sha256']}); CI: {ci.get('level', 'n/a')} bootstrap over clips "
            f"({ci.get('bootstrap', 'n/a')} resamples, seed {ci.get('seed', 'n/a')}).", "",
            *_table(["set", "EER", "95% CI", "clips"], rows)]


def write_card(out_dir: str | Path, config: dict[str, Any]) -> Path:
    """Write MODEL_CARD.md of `config` into `out_dir`; return its path."""
    path = Path(out_dir) / CARD_NAME
    write_text_atomic(render_card(config), path)
    return path
