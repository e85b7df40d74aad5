"""Table building blocks: mean ± std over seeds, number formats, Markdown tables and atomic CSV files.

Standard deviations are sample standard deviations (ddof = 1: the seeds are a sample of possible seeds); with a
single seed there is no spread to report and only the mean is printed.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..io import atomic_path

DASH = "–"


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample std or None for one value, n) over the values that are not None."""
    xs = np.array([v for v in values if v is not None], dtype=np.float64)
    if len(xs) == 0:
        return None, None, 0
    return float(xs.mean()), (float(xs.std(ddof=1)) if len(xs) > 1 else None), len(xs)


def fmt_number(x: float | None, digits: int = 3) -> str:
    """``digits`` significant digits; scientific notation outside [1e-3, 1e4) (FDRs span 1e1 to 1e9)."""
    if x is None:
        return DASH
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x != 0 and not 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits - 1}e}"
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")


def fmt_fixed3(x: float | None) -> str:
    """Three decimals (cosine similarities: 0.997 must not print as 1)."""
    return DASH if x is None else f"{x:.3f}"


def fmt_percent(x: float | None) -> str:
    """A fraction as a percentage with two decimals, the paper's format (0.8143 -> 81.43)."""
    return DASH if x is None else f"{100 * x:.2f}"


def fmt_mean_std(values: Iterable[float | None], fmt: Callable[[float | None], str] = fmt_number) -> str:
    """"mean ± std" (or the mean alone for one seed, or a dash for none)."""
    mean, std, n = mean_std(values)
    if n == 0:
        return DASH
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (cells are used as given; '|' inside a cell is escaped)."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def write_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write dict rows as CSV atomically. Columns: ``columns`` or the union of keys in first-seen order; a missing
    value is an empty cell. Floats keep full precision (repr), so the CSV can be checked against the run folders."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, values as strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
