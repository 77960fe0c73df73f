"""CSV on disk for Bulk API 2.0: results written as Salesforce writes them, read back by page.

A query result is spooled to an anonymous temporary file while the job runs, with the byte offset
of every `index_every`-th row kept in a compact array. Any page (`start` row, `count` rows) is then
served by seeking to the nearest indexed row and scanning forward, so a million-row export costs
a few kilobytes of memory, not the whole result.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "SEMICOLON": ";",
    "PIPE": "|",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
READ_CHUNK = 1 << 16


def bulk_cell(value: Any) -> str:
    """One value as Bulk API 2.0 CSV prints it: nulls empty, `true`/`false`, `...:00.000Z`."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        # The store prints datetimes as REST does (`+0000`); Bulk CSV uses `Z`.
        if len(value) == 28 and value[10] == "T" and value.endswith("+0000"):
            return value[:-5] + "Z"
        return value
    return str(value)


def column_getter(path: str) -> Callable[[dict[str, Any]], Any]:
    """Read a select-list path (`Account.Name`) from a row, flat-keyed or nested."""
    if "." not in path:
        return lambda row: row.get(path)
    parts = path.split(".")

    def get(row: dict[str, Any]) -> Any:
        if path in row:
            return row[path]
        value: Any = row
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value

    return get


class CsvSpool:
    """Rows written once (by one thread), then read as pages by any number of threads."""

    def __init__(
        self,
        header: list[str],
        delimiter: str = ",",
        line_ending: str = "\n",
        index_every: int = 1000,
        tmpdir: str | None = None,
    ) -> None:
        self.header = header
        self.delimiter = delimiter
        self.line_ending = line_ending
        self.index_every = index_every
        self._file = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115 - lives as long as the job
        self._fd = self._file.fileno()
        self._lock = threading.Lock()
        self.rows = 0
        self.size = 0
        self._index = array("Q")
        self._buffer = io.StringIO()
        self._writer = csv.writer(
            self._buffer,
            delimiter=delimiter,
            lineterminator=line_ending,
            quoting=csv.QUOTE_ALL,
        )
        self._writer.writerow(header)
        self.header_bytes = self._take_buffer()

    def _take_buffer(self) -> bytes:
        data = self._buffer.getvalue().encode("utf-8")
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def _write(self, data: bytes) -> None:
        with self._lock:
            os.pwrite(self._fd, data, self.size)
            self.size += len(data)

    def write_rows(self, rows: Iterable[list[str]], should_stop: Callable[[], bool] = bool) -> int:
        """Append rows of already-formatted cells; returns how many were written."""
        written = 0
        block: list[list[str]] = []
        for row in rows:
            block.append(row)
            if len(block) == self.index_every - (self.rows % self.index_every):
                self._flush_block(block)
                written += len(block)
                block = []
                if should_stop():
                    return written
        if block:
            self._flush_block(block)
            written += len(block)
        return written

    def _flush_block(self, block: list[list[str]]) -> None:
        if self.rows % self.index_every == 0:
            self._index.append(self.size)
        self._writer.writerows(block)
        self._write(self._take_buffer())
        self.rows += len(block)

    def append_row(self, row: list[str]) -> None:
        """Append a single row (result files of ingest jobs grow one record at a time)."""
        self.write_rows([row])

    # -- reading -------------------------------------------------------------------------------

    def _read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def _rows_from(self, offset: int) -> Iterator[tuple[int, int]]:
        """(start, end) byte spans of the rows from `offset` on. Every field is quoted, so a row
        ends at the first newline where the quotes seen so far are balanced."""
        pos = offset  # next byte to read
        row_start = offset
        data_start = offset  # file offset of data[0]
        odd = False
        data = b""
        while True:
            chunk = b""
            if pos < self.size:
                chunk = self._read(pos, min(READ_CHUNK, self.size - pos))
                pos += len(chunk)
                data += chunk
            scan = 0
            while True:
                nl = data.find(b"\n", scan)
                if nl < 0:
                    break
                if data.count(b'"', scan, nl) & 1:
                    odd = not odd
                scan = nl + 1
                if not odd:
                    yield row_start, data_start + scan
                    row_start = data_start + scan
            data = data[scan:]
            data_start += scan
            if not chunk:
                return

    def page_span(self, start: int, count: int) -> tuple[int, int, int]:
        """Byte span and row count of rows [start, start+count)."""
        count = max(0, min(count, self.rows - start))
        if count == 0:
            return 0, 0, 0
        block = start // self.index_every
        offset = self._index[block]
        skip = start - block * self.index_every
        end_row = start + count
        # The end may be known exactly from the index, which saves scanning the page.
        exact_end: int | None = None
        if end_row == self.rows:
            exact_end = self.size
        elif end_row % self.index_every == 0 and end_row // self.index_every < len(self._index):
            exact_end = self._index[end_row // self.index_every]
        begin = offset
        for seen, (row_start, row_end) in enumerate(self._rows_from(offset)):
            if seen == skip:
                begin = row_start
                if exact_end is not None:
                    return begin, exact_end, count
            if seen == skip + count - 1:
                return begin, row_end, count
        return begin, self.size, count

    def stream(self, begin: int, end: int, with_header: bool = True) -> Iterator[bytes]:
        """The bytes of a span (after the header row), in chunks."""
        if with_header:
            yield self.header_bytes
        pos = begin
        while pos < end:
            chunk = self._read(pos, min(READ_CHUNK, end - pos))
            if not chunk:
                return
            pos += len(chunk)
            yield chunk

    def all_bytes(self) -> Iterator[bytes]:
        return self.stream(0, self.size)

    def close(self) -> None:
        self._file.close()
