"""One file out of a .deb without unpacking the package: random access into its data.tar.xz.

Why: 0ad-data's .deb is 1.4 GB of xz around a 3.3 GB zip, of which the demo needs 5 MB of voices. `dpkg-deb -x`
decompresses everything (about 75 s of CPU and 3.3 GB of disk). dpkg builds data.tar.xz in independent xz blocks
(131 of them for 0ad-data), and the xz index at the end of the stream says where each block starts, so a
block can be decompressed alone: `member_file` opens a member of the tar as a seekable file whose reads
decompress only the blocks they touch (the tar headers, then e.g. a zip's central directory and the members
read from it).

A package whose data member is not a multi-block xz stream (one block, zstd, gzip) falls back to
`dpkg-deb --fsys-tarfile` streamed through tarfile, the member copied to the work dir: slower, same bytes.
Reads the .deb; writes only that fallback copy.
"""

from __future__ import annotations

import io
import lzma
import shutil
import struct
import subprocess
import tarfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pipeline.demo.common import FetchError

XZ_MAGIC, XZ_FOOTER_MAGIC = b"\xfd7zXZ\x00", b"YZ"


class NotSeekable(ValueError):
    """The data member cannot be read block by block (not xz, or a single xz block)."""


def ar_member(deb: Path, prefix: str = "data.tar") -> tuple[int, int, str]:
    """(offset, size, name) of the first member of the .deb (an ar archive) whose name starts with `prefix`."""
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb.name} is not a Debian package (no ar header)")
        while True:
            head = fh.read(60)
            if len(head) < 60:
                raise FetchError(f"{deb.name} has no {prefix}* member")
            name, size = head[:16].decode().strip().rstrip("/"), int(head[48:58].decode().strip())
            if name.startswith(prefix):
                return fh.tell(), size, name
            fh.seek(size + (size & 1), 1)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader(io.RawIOBase):
    """A read-only, seekable file of `length` bytes; a subclass fills `readinto` from position `pos`."""

    length = 0
    pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = max(0, {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence] + offset)
        return self.pos


class XZBlocks(_Reader):
    """The uncompressed bytes of a one-stream, multi-block .xz held at `offset`:`offset + size` of a file, as a
    seekable read-only file; each read decompresses only the blocks it needs (the last `cache` kept)."""

    def __init__(self, path: Path, offset: int, size: int, cache: int = 3) -> None:
        super().__init__()
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.base, self.cache_size, self.pos = offset, cache, 0
        self.cache: OrderedDict[int, bytes] = OrderedDict()
        self.header = self._pread(0, 12)
        if self.header[:6] != XZ_MAGIC:
            raise NotSeekable("not an xz stream")
        end = size
        while end > 12 and self._pread(end - 4, 4) == b"\0\0\0\0":  # stream padding
            end -= 4
        footer = self._pread(end - 12, 12)
        if footer[10:] != XZ_FOOTER_MAGIC or footer[8:10] != self.header[6:8]:
            raise NotSeekable("no xz stream footer")
        index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
        index = self._pread(end - 12 - index_size, index_size)
        count, pos = _varint(index, 1)
        self.blocks: list[tuple[int, int, int, int]] = []  # (compressed offset, unpadded, uncompressed offset, size)
        coff, uoff = 12, 0
        for _ in range(count):
            unpadded, pos = _varint(index, pos)
            usize, pos = _varint(index, pos)
            self.blocks.append((coff, unpadded, uoff, usize))
            coff += (unpadded + 3) // 4 * 4
            uoff += usize
        if coff != end - 12 - index_size:
            raise NotSeekable("more than one xz stream")
        if len(self.blocks) < 2:
            raise NotSeekable("a single xz block (no random access)")
        self.length = uoff

    def _pread(self, offset: int, n: int) -> bytes:
        self.fh.seek(self.base + offset)
        return self.fh.read(n)

    def _block(self, i: int) -> bytes:
        """Block i decompressed: the block wrapped in a one-block stream (header, index, footer) for lzma."""
        if i in self.cache:
            self.cache.move_to_end(i)
            return self.cache[i]
        coff, unpadded, _, usize = self.blocks[i]
        body = self._pread(coff, (unpadded + 3) // 4 * 4)
        index = b"\0" + _put_varint(1) + _put_varint(unpadded) + _put_varint(usize)
        index += b"\0" * (-len(index) % 4)
        index += struct.pack("<I", zlib.crc32(index))
        tail = struct.pack("<I", len(index) // 4 - 1) + self.header[6:8]
        data = lzma.decompress(self.header + body + index + struct.pack("<I", zlib.crc32(tail)) + tail + b"YZ",
                               format=lzma.FORMAT_XZ)
        if len(data) != usize:
            raise FetchError(f"xz block {i}: {len(data)} bytes, the index says {usize}")
        self.cache[i] = data
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return data

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.pos < self.length:
            i = self._find(self.pos)
            _, _, uoff, _ = self.blocks[i]
            data = self._block(i)
            chunk = data[self.pos - uoff: self.pos - uoff + len(view) - done]
            view[done: done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done

    def _find(self, pos: int) -> int:
        lo, hi = 0, len(self.blocks) - 1
        while lo < hi:  # the last block whose uncompressed offset is <= pos
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.blocks[mid][2] <= pos else (lo, mid - 1)
        return lo

    def close(self) -> None:
        self.fh.close()
        self.cache.clear()
        super().close()


class Window(_Reader):
    """Bytes `start`:`start + length` of a seekable file, as a seekable read-only file (a tar member's data)."""

    def __init__(self, raw: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self.raw, self.start, self.length, self.pos = raw, start, length, 0

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.length - self.pos))
        self.raw.seek(self.start + self.pos)
        data = self.raw.read(n)
        view[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _tar_name(name: str) -> str:
    return name.removeprefix("./").lstrip("/")


@contextmanager
def member_file(deb: Path, member: str, workdir: Path) -> Iterator[BinaryIO]:
    """The file `member` (a path in the package, e.g. usr/share/x/y.zip) of `deb`, open for seekable reading.

    Multi-block xz: read in place (only the blocks read are decompressed). Otherwise the member is streamed out
    of `dpkg-deb --fsys-tarfile` into `workdir` first. FetchError when the package has no such file.
    """
    want = _tar_name(member)
    offset, size, name = ar_member(deb)
    try:
        if not name.endswith(".xz"):
            raise NotSeekable(f"{name} is not xz")
        raw = XZBlocks(deb, offset, size)
    except NotSeekable:
        with _streamed_member(deb, want, workdir) as fh:
            yield fh
        return
    try:
        with tarfile.open(fileobj=raw, mode="r:") as tar:  # raw, not buffered: a buffer would close it
            found = next((m for m in tar if _tar_name(m.name) == want and m.isfile()), None)
        if found is None:
            raise FetchError(f"{deb.name} has no file {member}")
        yield io.BufferedReader(Window(raw, found.offset_data, found.size), buffer_size=1 << 16)
    finally:
        raw.close()


@contextmanager
def _streamed_member(deb: Path, want: str, workdir: Path) -> Iterator[BinaryIO]:
    """The slow path: `dpkg-deb --fsys-tarfile` streamed through tarfile, `want` copied to the work dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / Path(want).name
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                if _tar_name(m.name) == want and m.isfile():
                    src = tar.extractfile(m)
                    assert src is not None
                    with open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    break
    finally:
        proc.kill()
        proc.wait()
    if not dest.exists():
        raise FetchError(f"{deb.name} has no file {want}")
    with open(dest, "rb") as fh:
        yield fh
