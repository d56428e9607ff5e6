"""The clip tables of a large sample stage in Arrow: checked batch by batch, memory-mapped, written in chunks.

Reads the clip-table Parquet files the sample stage is given; writes a temporary Arrow IPC copy of their union
into a folder the caller owns (and removes), and the streamed stage's manifests. In pandas a clip table holds
about 1.5 KB a clip (3 GB at 1.8M rows); here the union stays on disk as an uncompressed IPC file that is
memory-mapped (file pages the kernel may drop, like the embedding shards), and the stage holds per clip only
what selection and the diagnostics need: the dictionary codes of label, split, paradigm, system and speaker
(int8/int32: 14 bytes a clip). Each manifest is written 64K rows at a time: the rows taken from the mapped
table, the sampler's columns appended, the chunk checked (schema.validate_arrow) and appended to the Parquet
file, which replaces its destination only once complete (io.atomic_path).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.io import atomic_path
from pipeline.schema import CLIP_COLUMNS, LABELS, SchemaError, check_file_schema, clip_schema, validate_arrow

WRITE_ROWS = 65536
CODE_COLUMNS = ("label", "split", "paradigm", "system", "speaker")
# Parquet dictionary pages for the columns with few values only: on every other column the writer would try
# and give up, at twice the cost of the whole write (measured)
DICTIONARY_COLUMNS = ["corpus", "speaker", "label", "system", "paradigm", "split", "sample_rate", "teacher",
                      "sampler"]


class ClipStore:
    """The union of the clip tables as a memory-mapped Arrow table, with the code columns the stage keeps."""

    def __init__(self, table: pa.Table, codes: dict[str, np.ndarray], values: dict[str, list[str]]) -> None:
        self.table = table
        self.codes, self.values = codes, values
        self.offsets = np.cumsum([0] + [len(c) for c in table.column(0).chunks]).astype(np.int64)
        self.batches = table.to_batches()

    @classmethod
    def open(cls, paths: Iterable[str | Path], workdir: Path, stage: str = "sample") -> ClipStore:
        """Check every clip table (file schema, then each record batch: schema.validate_arrow), copy their union
        into workdir/clips.arrow and map it, coding the CODE_COLUMNS on the way; clip ids must be unique over the
        union, as read_clip_tables asks."""
        schema = clip_schema()
        target = Path(workdir) / "clips.arrow"
        coder = {name: Coder() for name in CODE_COLUMNS}
        with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for path in paths:
                path = Path(path)
                if not path.exists():
                    raise FileNotFoundError(f"clip table {path} does not exist: run the stage that writes it first")
                check_file_schema(path, schema)
                offset = 0
                for batch in pq.ParquetFile(path).iter_batches(batch_size=WRITE_ROWS, columns=list(CLIP_COLUMNS)):
                    checked = validate_arrow(pa.Table.from_batches([batch]), stage=f"{stage}: {path}", offset=offset,
                                             unique_ids=False)
                    for name, c in coder.items():
                        c.add(checked.column(name))
                    writer.write_table(checked)
                    offset += len(checked)
        table = pa.ipc.open_file(pa.memory_map(str(target))).read_all()
        ids = table.column("clip_id")
        if pc.count_distinct(ids).as_py() != len(ids):
            validate_arrow(table, stage=f"{stage}: union of clip tables")     # names the duplicate
        store = cls(table, {n: c.codes() for n, c in coder.items()}, {n: c.values for n, c in coder.items()})
        release_arrow()
        return store

    def __len__(self) -> int:
        return self.table.num_rows

    def label_codes(self) -> np.ndarray:
        """Every row's label as an int8 index into LABELS."""
        order = np.array([LABELS.index(v) for v in self.values["label"]], dtype=np.int8)
        return order[self.codes["label"]] if len(order) else self.codes["label"].astype(np.int8)

    def split_is(self, split: str) -> np.ndarray:
        """Boolean per row: its split is `split`."""
        values = self.values["split"]
        return self.codes["split"] == values.index(split) if split in values else np.zeros(len(self), dtype=bool)

    def positions(self, ids: Any, what: str) -> np.ndarray:
        """The rows holding the given clip ids (int32 below 2^31 rows, else int64: 4 bytes a clip kept per pool);
        ValueError naming the first id that is not in the tables."""
        ids = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids, type=pa.string())
        found = pc.index_in(ids, value_set=self.table.column("clip_id"))
        if found.null_count:
            first = ids[pc.index(pc.is_null(found), True).as_py()]
            first = first.as_py() if hasattr(first, "as_py") else first
            raise ValueError(f"{what}: {found.null_count} embedded ids are not in the clip tables (first: "
                             f"{first!r}); embeddings and clip tables are out of date")
        pos = found.to_numpy(zero_copy_only=False).astype(np.int32 if len(self) < 2**31 else np.int64)
        release_arrow()        # the hash table of every clip id
        return pos

    def categorical(self, name: str) -> pd.Categorical:
        """Every row's value of a CODE_COLUMNS column as a pandas Categorical whose categories are sorted (a code of
        one or two bytes a row, where `strings` costs an 8-byte object pointer a row); indexing it with rows and
        factorizing with sort=True gives the order of the strings themselves."""
        values = self.values[name]
        order = sorted(range(len(values)), key=values.__getitem__)
        rank = np.empty(len(values), dtype=np.int64)
        rank[order] = np.arange(len(values))
        codes = rank[self.codes[name]].astype(np.int16 if len(values) < 2**15 else np.int32)
        return pd.Categorical.from_codes(codes, categories=[values[k] for k in order])

    def value_codes(self, name: str) -> np.ndarray:
        """Every row's value of any string column as an int32 code (-1: null): rows share a code exactly when
        they share the value (e.g. parent_id, which has too many values to keep as CODE_COLUMNS)."""
        column = self.table.column(name)
        found = pc.index_in(column, value_set=pc.drop_null(pc.unique(column)))
        codes = pc.fill_null(found, -1).to_numpy().astype(np.int32)
        release_arrow()
        return codes

    def counts(self, pos: np.ndarray, columns: Iterable[str] = ("label", "paradigm", "system", "speaker")) -> dict:
        """diagnostics.counts of the rows at `pos`: row count and value counts per column, sorted by value."""
        out: dict[str, Any] = {"n": int(len(pos))}
        for name in columns:
            n = np.bincount(self.codes[name][pos], minlength=len(self.values[name]))
            out[name] = {self.values[name][k]: int(n[k]) for k in sorted(np.flatnonzero(n),
                                                                          key=lambda k: self.values[name][k])}
        return out

    def take(self, pos: np.ndarray) -> pa.Table:
        """The rows at `pos`, in that order: each record batch takes its own rows (Table.take over a chunked
        table is several times slower), then one take puts them in order."""
        which = np.searchsorted(self.offsets, pos, side="right") - 1
        order = np.argsort(which, kind="stable")
        pos, which = pos[order], which[order]
        bounds = np.searchsorted(which, np.arange(len(self.batches) + 1))
        parts = [self.batches[k].take(pa.array(pos[a:b] - self.offsets[k]))
                 for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]
        table = pa.Table.from_batches(parts, schema=self.table.schema).combine_chunks()
        if np.all(order[1:] > order[:-1]):
            return table
        back = np.empty(len(order), dtype=np.int64)
        back[order] = np.arange(len(order))
        return table.take(pa.array(back))

    def write_manifest(self, path: Path, pos: np.ndarray, columns: dict[str, Any], stage: str) -> int:
        """Write the rows at `pos` (in that order) with the manifest columns (teacher, distance, cluster, sampler:
        one value or one per row) as a clip table with the manifest group, WRITE_ROWS rows at a time."""
        seen = np.zeros(len(self), dtype=bool)      # a byte a store row, not a sorted copy of `pos`
        seen[pos] = True
        if int(np.count_nonzero(seen)) != len(pos):
            raise SchemaError(f"clip table ({stage}): a manifest repeats a clip")
        del seen
        schema = manifest_schema()
        with atomic_path(path) as tmp, pq.ParquetWriter(str(tmp), schema, use_dictionary=DICTIONARY_COLUMNS,
                                                        write_statistics=False) as writer:
            for a in range(0, max(len(pos), 1), WRITE_ROWS):
                part = pos[a:a + WRITE_ROWS]
                chunk = self.take(part)
                for name, value in columns.items():
                    chunk = chunk.append_column(name, _column(value, a, len(part), schema.field(name).type))
                checked = validate_arrow(chunk, stage=stage, groups=("manifest",), offset=a, unique_ids=False)
                writer.write_table(checked.replace_schema_metadata(schema.metadata))
        release_arrow()
        return int(len(pos))


def release_arrow() -> None:
    """Give the memory Arrow's allocator keeps after a large transient (a hash table over every clip id, the
    checked batches) back to the system: mimalloc holds freed pages otherwise, and at 10M clips they were
    ~700 MB of the stage's peak (numpy and pandas never reuse them)."""
    pa.default_memory_pool().release_unused()


class Coder:
    """Dictionary codes of one string column, batch by batch: codes numbered in order of first appearance."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def add(self, column: pa.ChunkedArray) -> None:
        encoded = pc.dictionary_encode(column).combine_chunks()
        local = [self.index.setdefault(str(v), len(self.index)) for v in encoded.dictionary.to_pylist()]
        self.values = list(self.index)
        self.parts.append(np.asarray(local, dtype=np.int32)[encoded.indices.to_numpy(zero_copy_only=False)])

    def codes(self) -> np.ndarray:
        """int8 codes (int32 past 127 values) for every row added."""
        codes = np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.int32)
        return codes.astype(np.int8 if len(self.values) < 128 else np.int32)


def _column(value: Any, start: int, n: int, typ: pa.DataType) -> pa.Array:
    """One manifest column for rows start..start+n: a constant, a slice of a per-row array (NaN distance and
    negative cluster: null, as the pandas manifests write them) or of a pandas Categorical (its strings, made a
    chunk at a time: a whole column of string objects would cost 8 bytes a row)."""
    if isinstance(value, pd.Categorical):
        codes = np.asarray(value.codes[start:start + n])
        strings = np.asarray(value.categories, dtype=object)[np.maximum(codes, 0)]
        return pa.array(strings, type=typ, mask=codes < 0)
    if not isinstance(value, np.ndarray):
        return pa.array([value] * n, type=typ)
    part = value[start:start + n]
    if pa.types.is_integer(typ):
        return pa.array(part, type=typ, mask=part < 0)
    if pa.types.is_floating(typ):
        return pa.array(part, type=typ, mask=np.isnan(part))
    return pa.array(part, type=typ)


def manifest_schema() -> pa.Schema:
    """The manifest schema with the pandas metadata of the in-memory path's files, so both read back alike."""
    from pipeline.schema import empty_clips

    frame = empty_clips(("manifest",))
    frame["cluster"] = frame["cluster"].astype("Int32")      # as sample._manifest_rows makes it
    return pa.Table.from_pandas(frame, schema=clip_schema(("manifest",)), preserve_index=False).schema
