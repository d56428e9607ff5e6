"""The clip table: one row per clip, the contract between every stage.

Read by every stage, written by prepare, reconstruct and sample. The base columns are
DESIGN.md's; stages that add columns name them in a column group here (MANIFEST_COLUMNS).
`fix_*` functions drop bad rows and say so; `validate_*` functions raise, naming the row.
A Parquet file of another schema is a SchemaError, never a silent cast.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import write_parquet_atomic
from pipeline.logs import StageError, log_some

log = logging.getLogger(__name__)

LABELS = ("bonafide", "spoof")
# The label index of every model, loss and class-mean: spoof = 0, bonafide = 1 (score = logit[1] - logit[0]).
LABEL_INDEX = {"spoof": 0, "bonafide": 1}
SPOOF, BONAFIDE = LABEL_INDEX["spoof"], LABEL_INDEX["bonafide"]
PARADIGMS = ("bonafide", "diffusion", "codec", "vocoder", "tts", "vc", "corpus")  # vc: voice conversion
# What a system's output is: `spoof` (a generator made it: a fake) or `channel` (a transmission or compression
# effect that keeps the label, applied to both classes). Default by family; params `roles` may flip any system.
ROLES = ("spoof", "channel")
CHANNEL_FAMILIES = ("mp3", "opus", "codec2", "g711", "gsm", "g726", "g722")  # = pipeline.resynth.channel.FAMILIES
BASE_SPLITS = ("train", "dev", "test")
# A name that becomes a file or folder name (an eval set, a teacher, a corpus, a paradigm): no path separator,
# no leading dot or dash, nothing a shell or a spreadsheet would act on.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

CLIP_FIELDS = [
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("corpus", pa.string(), nullable=False),
    pa.field("speaker", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("system", pa.string(), nullable=False),
    pa.field("paradigm", pa.string(), nullable=False),
    pa.field("parent_id", pa.string(), nullable=True),
    pa.field("split", pa.string(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("bandwidth_hz", pa.float64(), nullable=False),
    pa.field("leading_silence_s", pa.float64(), nullable=False),
    pa.field("trailing_silence_s", pa.float64(), nullable=False),
    pa.field("rms_dbfs", pa.float64(), nullable=False),
    pa.field("noise_floor_dbfs", pa.float64(), nullable=False),
    pa.field("spectral_tilt_db", pa.float64(), nullable=False),
    pa.field("sha256", pa.string(), nullable=False),
    # provenance: the corpus file prepare read (for a reconstruction: its parent's)
    pa.field("source", pa.string(), nullable=False),
    # for a fake matched to its parent (pipeline.matching.match_to_parent): what was matched, e.g.
    # "length,band,level,silence,gate:parent"; null for bona fide and unmatched fakes
    pa.field("matched", pa.string(), nullable=True),
]
CLIP_COLUMNS = tuple(f.name for f in CLIP_FIELDS)

# Column groups added by later stages.
MANIFEST_FIELDS = [
    pa.field("teacher", pa.string(), nullable=False),
    pa.field("distance", pa.float64(), nullable=True),
    pa.field("cluster", pa.int32(), nullable=True),
    pa.field("sampler", pa.string(), nullable=False),
]
MANIFEST_COLUMNS = tuple(f.name for f in MANIFEST_FIELDS)

REJECT_FIELDS = [
    pa.field("clip_id", pa.string(), nullable=True),
    pa.field("path", pa.string(), nullable=True),
    pa.field("corpus", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
]
REJECT_COLUMNS = tuple(f.name for f in REJECT_FIELDS)

COLUMN_GROUPS: dict[str, list[pa.Field]] = {"manifest": MANIFEST_FIELDS}


class SchemaError(StageError):
    """A table does not have the clip-table schema (or names the offending row)."""


def clip_schema(groups: Iterable[str] = ()) -> pa.Schema:
    """The pyarrow schema of a clip table plus the named column groups."""
    fields = list(CLIP_FIELDS)
    for g in groups:
        if g not in COLUMN_GROUPS:
            raise KeyError(f"unknown column group {g!r}; known: {sorted(COLUMN_GROUPS)}")
        fields += COLUMN_GROUPS[g]
    return pa.schema(fields)


REJECT_SCHEMA = pa.schema(REJECT_FIELDS)


def empty_clips(groups: Iterable[str] = ()) -> pd.DataFrame:
    """An empty clip table with the right columns and dtypes."""
    return clip_schema(groups).empty_table().to_pandas()


def default_role(system: str) -> str:
    """`channel` for a classical codec or telephone channel (mp3_16kbps, codec2_1300, g711_mulaw, ...), else `spoof`."""
    return "channel" if str(system).split("_")[0] in CHANNEL_FAMILIES else "spoof"


def system_role(system: str, roles: Mapping[str, str] | None = None) -> str:
    """A system's role: the params `roles` entry when given (a user's flip), else `default_role`."""
    return (roles or {}).get(str(system)) or default_role(system)


def name_ok(name: object) -> bool:
    """True when `name` may become a file or folder name (SAFE_NAME: letters, digits, `_ . -`, no separator)."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def check_name(kind: str, name: object) -> str:
    """Return `name` when name_ok, else a SchemaError that names it: an eval set, teacher or corpus name becomes a
    path (reports/scores/<set>.txt, data/teachers/<T>/), so `../x` or `/tmp/x` must never reach one."""
    if not name_ok(name):
        raise SchemaError(f"{kind} name {name!r} is not allowed: use 1-64 ASCII letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit (it becomes a file name)")
    return str(name)


def split_ok(split: str) -> bool:
    """A valid split name: train, dev, test or eval:<set>, the set a safe name (it names reports/scores/<set>.txt)."""
    return split in BASE_SPLITS or (isinstance(split, str) and split.startswith("eval:") and name_ok(split[5:]))


def fix_clips(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop rows that cannot be valid (duplicate ids, unknown labels); return (kept, dropped).

    `dropped` has a `reason` column so that the caller can write it to the rejects table.
    """
    reasons = pd.Series("", index=df.index, dtype=object)
    dup = df["clip_id"].duplicated(keep="first")
    reasons[dup] = "duplicate clip_id"
    bad_label = ~df["label"].isin(LABELS)
    reasons[bad_label & (reasons == "")] = "unknown label " + df["label"].astype(str)
    bad = reasons != ""
    dropped = df[bad].assign(reason=reasons[bad])
    log_some(log, list(zip(dropped["clip_id"].astype(str), dropped["reason"])), "dropping clip")
    return df[~bad].reset_index(drop=True), dropped.reset_index(drop=True)


# The value checks of validate_clips and validate_arrow, in order: (column, what a failing row is told).
VALUE_CHECKS = (("label", f"label not in {LABELS}"), ("paradigm", f"paradigm not in {PARADIGMS}"),
                ("split", "split not train/dev/test/eval:<set> (set: letters, digits, _ . -)"),
                ("duration_s", "duration_s not positive"), ("sample_rate", "sample_rate not positive"))
VALUE_OK = {"label": lambda v: v in LABELS, "paradigm": lambda v: v in PARADIGMS, "split": split_ok,
            "duration_s": lambda v: math.isfinite(v) and v > 0, "sample_rate": lambda v: v > 0}


def validate_clips(df: pd.DataFrame, stage: str = "", groups: Iterable[str] = ()) -> pd.DataFrame:
    """Raise SchemaError unless `df` is a valid clip table; return it with canonical dtypes."""
    where = f" ({stage})" if stage else ""
    schema = clip_schema(groups)
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise SchemaError(f"clip table{where} lacks columns {missing}")
    df = df[list(schema.names)].reset_index(drop=True)
    for field in schema:
        col = df[field.name]
        if not field.nullable and col.isna().any():
            i = int(col.isna().to_numpy().nonzero()[0][0])
            raise SchemaError(f"clip table{where}: row {i} (clip_id={df['clip_id'].iloc[i]!r}) has null {field.name}")
    dup = df["clip_id"].duplicated()
    if dup.any():
        raise SchemaError(f"clip table{where}: duplicate clip_id {df['clip_id'][dup].iloc[0]!r}")
    for column, what in VALUE_CHECKS:
        ok = VALUE_OK[column]
        for i, value in enumerate(df[column].tolist()):
            if not ok(value):
                raise SchemaError(f"clip table{where}: row {i} (clip_id={df['clip_id'].iloc[i]!r}) {what}: {value!r}")
    bad_bona = ((df["label"] == "bonafide") & (df["system"] != "-")).to_numpy()
    if bad_bona.any():
        i = int(bad_bona.argmax())
        raise SchemaError(f"clip table{where}: row {i} (clip_id={df['clip_id'].iloc[i]!r}) is bonafide "
                          "with a system other than '-'")
    return _cast(df, schema)


def _cast(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    try:
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"clip table does not fit the schema: {exc}") from exc
    return table.to_pandas()


def validate_arrow(table: pa.Table, stage: str = "", groups: Iterable[str] = (), offset: int = 0,
                   unique_ids: bool = True) -> pa.Table:
    """validate_clips for an Arrow table, column by column with pyarrow.compute (no Python loop over rows): the
    same checks in the same order, the same messages (rows counted from `offset`); returns the table in the
    schema's column order and types. The sample stage checks large clip tables and manifests so, batch by batch
    (`unique_ids=False`: the caller checks that clip ids are unique over all batches)."""
    import pyarrow.compute as pc

    where = f" ({stage})" if stage else ""
    schema = clip_schema(groups)
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise SchemaError(f"clip table{where} lacks columns {missing}")
    table = table.select(schema.names)
    ids = table.column("clip_id")

    def fail(bad: pa.ChunkedArray | pa.Array, what: str, column: str | None = None) -> None:
        """SchemaError naming the first row where `bad` is true (and its value of `column`)."""
        i = pc.index(bad, True).as_py()
        if i is not None and i >= 0:
            value = f": {table.column(column)[i].as_py()!r}" if column else ""
            raise SchemaError(f"clip table{where}: row {offset + i} (clip_id={ids[i].as_py()!r}) {what}{value}")

    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            fail(pc.is_null(table.column(field.name)), f"has null {field.name}")
    if unique_ids and pc.count_distinct(ids).as_py() != len(ids):
        dup = pd.Series(ids.to_numpy(zero_copy_only=False)).duplicated()
        raise SchemaError(f"clip table{where}: duplicate clip_id {ids[int(dup.to_numpy().argmax())].as_py()!r}")
    col = table.column
    for column, what in VALUE_CHECKS:
        if pa.types.is_string(col(column).type) or pa.types.is_large_string(col(column).type):
            # a few distinct values: each checked as validate_clips checks it, the rows found only on failure
            bad = [v for v in pc.unique(col(column)).to_pylist() if v is not None and not VALUE_OK[column](v)]
            if bad:
                fail(pc.is_in(col(column), value_set=pa.array(bad, col(column).type)), what, column)
        elif column == "duration_s":
            fail(pc.invert(pc.and_(pc.is_finite(col(column)), pc.greater(col(column), 0))), what, column)
        else:
            fail(pc.invert(pc.greater(col(column), 0)), what, column)
    fail(pc.and_(pc.equal(col("label"), "bonafide"), pc.not_equal(col("system"), "-")),
         "is bonafide with a system other than '-'")
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise SchemaError(f"clip table does not fit the schema: {exc}") from exc


def check_split_speakers(df: pd.DataFrame, stage: str = "") -> None:
    """Raise SchemaError when a (corpus, speaker) appears in more than one of train/dev/test."""
    base = df[df["split"].isin(BASE_SPLITS)]
    per = base.groupby(["corpus", "speaker"])["split"].nunique()
    crossing = per[per > 1]
    if len(crossing):
        corpus, speaker = crossing.index[0]
        raise SchemaError(f"clip table ({stage}): speaker {speaker!r} of {corpus!r} crosses train/dev/test splits")


def check_file_schema(path: Path, expected: pa.Schema) -> None:
    """SchemaError unless the Parquet file at `path` has every column of `expected` with its type (no silent cast)."""
    actual = pq.read_schema(path)
    for field in expected:
        idx = actual.get_field_index(field.name)
        if idx < 0:
            raise SchemaError(f"{path}: not a clip table of this schema: column {field.name!r} is missing")
        have = actual.field(idx).type
        if not (have.equals(field.type) or (pa.types.is_string(field.type) and pa.types.is_large_string(have))):
            raise SchemaError(
                f"{path}: column {field.name!r} is {have}, expected {field.type} (no silent cast)"
            )


def read_clips(path: str | Path, stage: str = "", groups: Iterable[str] = ()) -> pd.DataFrame:
    """Read and validate a clip-table Parquet file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"clip table {path} does not exist: run the stage that writes it first")
    groups = tuple(groups)
    check_file_schema(path, clip_schema(groups))
    return validate_clips(pd.read_parquet(path), stage=stage or str(path), groups=groups)


def groups_of(path: str | Path) -> tuple[str, ...]:
    """("manifest",) when the Parquet file has the manifest columns, else (): the groups to read it with."""
    names = set(pq.read_schema(path).names) if Path(path).exists() else set()
    return ("manifest",) if set(MANIFEST_COLUMNS) <= names else ()


def write_clips(df: pd.DataFrame, path: str | Path, stage: str = "", groups: Iterable[str] = ()) -> pd.DataFrame:
    """Validate and write a clip table atomically; return the validated table."""
    groups = tuple(groups)
    df = validate_clips(df, stage=stage, groups=groups)
    table = pa.Table.from_pandas(df, schema=clip_schema(groups), preserve_index=False)
    write_parquet_atomic(table, path)
    return df


def make_rejects(rows: list[dict]) -> pd.DataFrame:
    """A rejects table from dicts with (clip_id, path, corpus, stage, reason)."""
    if not rows:
        return REJECT_SCHEMA.empty_table().to_pandas()
    df = pd.DataFrame(rows)
    for name in REJECT_COLUMNS:
        if name not in df.columns:
            df[name] = None
    return df[list(REJECT_COLUMNS)]


def write_rejects(df: pd.DataFrame, path: str | Path) -> None:
    """Write a rejects table atomically (always, even when empty, so DVC has its output)."""
    df = make_rejects([]) if df is None or df.empty else df[list(REJECT_COLUMNS)]
    for name in ("corpus", "stage", "reason"):
        if df[name].isna().any():
            raise SchemaError(f"rejects table: null {name}")
    write_parquet_atomic(pa.Table.from_pandas(df, schema=REJECT_SCHEMA, preserve_index=False), path)


def read_rejects(path: str | Path) -> pd.DataFrame:
    """Read a rejects table, checking its columns."""
    path = Path(path)
    check_file_schema(path, REJECT_SCHEMA)
    return pd.read_parquet(path)[list(REJECT_COLUMNS)]


def read_clip_tables(paths: Iterable[str | Path], stage: str = "") -> pd.DataFrame:
    """Read several clip tables (clips.parquet + data/recon/*.parquet) as one validated table."""
    frames = [read_clips(p, stage=stage) for p in paths]
    if not frames:
        return empty_clips()
    return validate_clips(pd.concat(frames, ignore_index=True), stage=stage or "union of clip tables")


# What a corpus adapter returns: one row per source file, before audio is read and measured.
SOURCE_COLUMNS = ("clip_id", "source_path", "corpus", "speaker", "label", "system", "paradigm", "split", "parent_id")


def validate_sources(df: pd.DataFrame, corpus: str) -> pd.DataFrame:
    """Raise SchemaError unless an adapter's table has the source columns and valid values.

    `split` may be null: prepare then assigns a speaker-disjoint split. `parent_id` (null for most
    rows) names the real clip a corpus fake was made from, where the corpus says so.
    """
    missing = [c for c in SOURCE_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"{corpus} adapter: source table lacks columns {missing}")
    df = df[list(SOURCE_COLUMNS)].reset_index(drop=True)
    for column in ("clip_id", "source_path", "corpus", "speaker", "label", "system", "paradigm"):
        if df[column].isna().any():
            i = int(df[column].isna().to_numpy().argmax())
            raise SchemaError(f"{corpus} adapter: row {i} (clip_id={df['clip_id'].iloc[i]!r}) has null {column}")
    for column, allowed in (("label", LABELS), ("paradigm", PARADIGMS)):
        bad = ~df[column].isin(allowed)
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise SchemaError(f"{corpus} adapter: row {i} (clip_id={df['clip_id'].iloc[i]!r}) {column} "
                              f"{df[column].iloc[i]!r} not in {allowed}")
    split = df["split"].dropna()
    bad_split = ~split.map(split_ok)
    if bad_split.any():
        raise SchemaError(f"{corpus} adapter: split {split[bad_split].iloc[0]!r} not train/dev/test/eval:<set>")
    if df["clip_id"].duplicated().any():
        raise SchemaError(f"{corpus} adapter: duplicate clip_id {df['clip_id'][df['clip_id'].duplicated()].iloc[0]!r}")
    return df
