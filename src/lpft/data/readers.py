"""File reading and split plumbing shared by the task modules.

Every problem becomes a one-line :class:`DataError` that names the file, the 1-based line and what was expected.
Readers return complete lists or raise, so a task never holds a half-loaded split.
"""

from __future__ import annotations

import csv
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .base import DataError, Example, split_train_validation

DATA_DIR_ENV = "LPFT_DATA_DIR"


def short(value: object, limit: int = 60) -> str:
    """``repr`` of a value cut to ``limit`` characters; repr also escapes newlines, keeping messages on one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(error: BaseException) -> str:
    """An exception as ``Type: first line of its message`` (library errors are often multi-line)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The local data folder: ``data_dir``, else ``$LPFT_DATA_DIR``, else ``None`` (meaning: use the hub)."""
    source = "data_dir"
    if data_dir is None or str(data_dir) == "":
        data_dir, source = os.environ.get(DATA_DIR_ENV) or None, DATA_DIR_ENV
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"data folder {path} (from {source}) does not exist or is not a folder")
    return path


def task_folder(data_dir: Path, folder: str) -> Path:
    """``data_dir/folder``, matching the folder name case-insensitively when the exact spelling is absent."""
    exact = data_dir / folder
    if exact.is_dir():
        return exact
    for child in sorted(data_dir.iterdir()):
        if child.is_dir() and child.name.lower() == folder.lower():
            return child
    return exact  # missing: the file check that follows names the expected path


def require_file(path: Path, task: str, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"task {task!r}: {what} {path} not found")
    return path


def _decoded(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, decoded line with its line ending)`` for every line of a UTF-8 file.

    Decoding per line (rather than the whole file) lets an encoding error name its line and the column within it
    (a UTF-8 character never spans a newline byte). A UTF-8 BOM is dropped.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}, line {number}: not valid UTF-8 ({e.reason}: byte 0x{raw[e.start]:02x} "
                                f"at byte {e.start + 1} of the line); expected UTF-8 text") from None


def _lines(path: Path):
    """Yield ``(line number, decoded line without its newline)`` for the non-blank lines of a UTF-8 file."""
    for number, line in _decoded(path):
        line = line.rstrip("\r\n")
        if line.strip():
            yield number, line


@contextmanager
def _no_field_size_limit():
    """Lift the csv module's 131,072-character field limit (a long review is not malformed); restore it after."""
    previous = csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A header line and rows of a quoted delimited file (standard CSV quoting: ``"`` quotes, ``""`` escapes).

    This is what ``csv.writer`` and ``pandas.DataFrame.to_csv`` write, for commas and for tabs. A quoted field
    may hold the delimiter, quotes and newlines. Returns ``(header, [(first line of the record, fields), ...])``;
    blank lines are skipped and every record must have as many fields as the header. Errors name the line where
    the bad record *starts*, so an unterminated quote is reported where it opens, not at the end of the file.
    """
    kind = {",": "comma", "\t": "tab"}.get(delimiter, repr(delimiter))
    lines = _decoded(path)
    reader = csv.reader((line for _, line in lines), delimiter=delimiter, strict=True)
    header, rows, start = None, [], 1
    with _no_field_size_limit():
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader, None)
            except csv.Error as e:
                if "unexpected end of data" in str(e):
                    raise DataError(f"{path}, line {start}: unterminated quoted field (a quote opens in the record "
                                    f"starting on this line and never closes); expected a closing \"") from None
                raise DataError(f"{path}, line {reader.line_num}: malformed {kind}-separated record ({e}); "
                                f"expected fields quoted as in standard CSV") from None
            if fields is None:
                break
            if not fields or not any(x.strip() for x in fields):
                continue
            if header is None:
                header = fields
                continue
            if len(fields) != len(header):
                span = f"lines {start}-{reader.line_num}" if reader.line_num > start else f"line {start}"
                hint = "; a quoted field spans these lines: check for a stray quote" if reader.line_num > start else ""
                raise DataError(f"{path}, {span}: expected {len(header)} {kind}-separated fields "
                                f"({', '.join(header)}), got {len(fields)}{hint}")
            rows.append((start, fields))
    if header is None:
        raise DataError(f"{path}: empty file; expected a header line and at least one row")
    if not rows:
        raise DataError(f"{path}: no rows; expected at least one example")
    return header, rows


def check_header(path: Path, header: Sequence[str]) -> None:
    """A DataError naming a repeated column name (otherwise the first one would be used silently)."""
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}, line 1: duplicate column name {name!r} (header: {', '.join(header)}); "
                            f"expected distinct column names")
        seen.add(name)


def subsample(examples: list[Example], size: int, seed: int = 0) -> list[Example]:
    """A seeded, label-stratified sample of ``size`` examples in file order; the whole list if it is not larger.

    scikit-learn's ``train_test_split(train_size=size, stratify=labels, random_state=seed)`` picks the rows, so
    each label keeps its share (to rounding) and the same file always gives the same sample.
    """
    if len(examples) <= size:
        return examples
    from sklearn.model_selection import train_test_split

    index, labels = np.arange(len(examples)), np.array([ex.label for ex in examples])
    try:
        keep, _ = train_test_split(index, train_size=size, stratify=labels, random_state=seed)
    except ValueError:  # a label with a single example (or too few rows left over) cannot be stratified
        keep, _ = train_test_split(index, train_size=size, random_state=seed)
    return [examples[i] for i in sorted(keep)]


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each line of a JSON Lines file; blank lines are skipped."""
    rows = []
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {number}: malformed JSON ({e.msg} at column {e.colno}); "
                            f"expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        rows.append((number, record))
    if not rows:
        raise DataError(f"{path}: no rows; expected at least one example")
    return rows


def read_tsv(path: Path, header: bool) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """Tab-separated rows, one per line, with no quoting (the GLUE convention: quotes are literal text).

    Returns ``(header fields or None, [(line number, fields), ...])``; every row must have as many fields as the
    header. Without a header the caller checks the field count.
    """
    lines = _lines(path)
    columns = None
    if header:
        first = next(lines, None)
        if first is None:
            raise DataError(f"{path}: empty file; expected a header line and at least one row")
        columns = first[1].split("\t")
    rows = []
    for number, line in lines:
        fields = line.split("\t")
        if columns is not None and len(fields) != len(columns):
            raise DataError(f"{path}, line {number}: expected {len(columns)} tab-separated fields "
                            f"({', '.join(columns)}), got {len(fields)}")
        rows.append((number, fields))
    if not rows:
        raise DataError(f"{path}: no rows; expected at least one example")
    return columns, rows


def column_index(path: Path, columns: list[str], name: str) -> int:
    """Position of a header column, or a DataError listing the header."""
    if name not in columns:
        raise DataError(f"{path}, line 1: missing column {name!r} (header has: {', '.join(columns)})")
    return columns.index(name)


def text_field(record: dict, key: str, where: str, shown: str | None = None) -> str:
    """``record[key]`` as a string, or a DataError naming ``where`` (``file, line N``) and the field."""
    if key not in record:
        raise DataError(f"{where}: missing field {shown or key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {shown or key!r} is {type(value).__name__}, expected a string")
    return value


def paper_loader(read_train: Callable[[], list[Example]],
                 read_test: Callable[[], list[Example]]) -> Callable[[str], list[Example]]:
    """A ``Task.loader`` for the paper's rule: official train split 9:1 into train/validation, official dev = test.

    The official train file is read once even though two splits come from it.
    """
    official: dict[str, list[Example]] = {}

    def load(split: str) -> list[Example]:
        if split == "test":
            return read_test()
        if "train" not in official:
            official["train"] = read_train()
        train, validation = split_train_validation(official["train"])
        return train if split == "train" else validation

    return load
