"""Tables of rows with a bag column: the data most people with label proportions have.

``plotllp train --dataset table:FILE --bag-column COL`` reads a CSV (or Parquet, with pyarrow
installed) file. ``--bag-column a,b`` groups rows by several columns (feature bags); the bag id is then
their values joined by ``|`` (as the proportions file must name it). The features are
``--features a,b,c`` or every other numeric column. The bags' proportions come from either

- ``--proportions FILE``: a table with the bag id in its first column (or in a column named like the
  bag column) and one column per class, holding proportions or integer counts (real LLP data: no
  instance labels, so no test accuracy; runs report the bag-level error on training and held-out
  bags), or
- ``--label-column COL``: instance labels that plotllp aggregates into each bag's proportions
  itself (experiments); a seeded ``--test-fraction`` of the bags is then held out, whole, as the
  test set.

Features are standardised with the training rows' mean and std (stored with the model, so
``plotllp predict`` applies the same scaling).
"""

from __future__ import annotations

import contextlib
import csv
import gc
import itertools
import math
import os
import re

import numpy as np

from ..bags import bags_from_ids, is_missing
from ..errors import DataFileError, LLPInputError
from .dataset import Dataset


def read_table(path: str, *, text=None) -> dict:
    """Columns of a CSV or Parquet file as ``{name: values}``.

    ``text``: None (default), every CSV column as a list of strings. Otherwise the names of the columns
    to keep as text (bag ids, labels): every other CSV column that :func:`_is_numeric` finds numeric
    (numbers, or the words true and false: 1 and 0) is parsed as it is read, a block of rows at a time,
    and comes back as a float64 array, or, where one of its values is not a finite number (or not of the
    column's kind), as an :class:`UnparsedColumn` holding the error that :func:`_numeric` raises for it.
    The millions of values of a large table then never stand as
    Python strings all at once (``benchmarks/results/tables.md``). A Parquet file's columns likewise:
    with ``text`` given, an integer, floating or boolean column not named in it comes back as a float64
    array (or :class:`UnparsedColumn`), converted by pyarrow; every other column as a list of pyarrow's
    Python values (:func:`_parquet_column`)."""
    check_table_file(path)
    if path.lower().endswith((".parquet", ".pq")):
        return _read_parquet(path, text)
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(2 ** 31 - 1)           # a long free-text cell is read (not "field larger than ...")
        with open(path, newline="", encoding="utf-8-sig") as f, _gc_paused():   # (a byte-order mark is not a name)
            return _read_csv(path, csv.reader(f), text=text)
    except DataFileError:
        raise
    except UnicodeDecodeError:
        raise DataFileError(f"{path} is not a readable CSV file (UnicodeDecodeError: not UTF-8 text; save it as "
                            "UTF-8)") from None
    except (OSError, csv.Error) as e:
        raise DataFileError(f"{path} is not a readable CSV file ({type(e).__name__}: {e})") from None
    finally:
        csv.field_size_limit(limit)


def check_table_file(path: str) -> None:
    """The one-line error for a table file that cannot be read: none named, a folder, missing."""
    if not path:
        raise LLPInputError("no table file named (give table:FILE)")
    if os.path.isdir(path):
        raise DataFileError(f"table {path} is a folder; give one CSV or Parquet file (of a Parquet data set "
                            "folder, one of its files)")
    if not os.path.isfile(path):
        raise DataFileError(f"table {path} does not exist")


def _repeated(names: list) -> str:
    seen: set = set()
    return next(n for n in names if n in seen or seen.add(n))


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off for a bulk read: the millions of row lists it makes (none
    in a cycle) would each trigger passes over all the others (``benchmarks/results/tables.md``)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read_parquet(path: str, text) -> dict:
    """The columns of a Parquet file (:func:`read_table`), read one at a time: pyarrow's buffers of only
    one column are held besides the columns already converted, and its memory pool gives back what the
    column it converted freed (``benchmarks/results/tables_parquet.md``)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LLPInputError(f"reading {path} needs pyarrow (pip install pyarrow), or give a CSV file") from None

    def unreadable(e):
        return DataFileError(f"{path} is not a readable Parquet file ({type(e).__name__})")

    try:
        f = pq.ParquetFile(path)
        names, rows = f.schema_arrow.names, f.metadata.num_rows
    except Exception as e:  # noqa: BLE001  (pyarrow raises its own kinds)
        raise unreadable(e) from None
    with f, _gc_paused():
        if not names:
            raise DataFileError(f"{path} has no columns")
        if len(set(names)) != len(names):
            raise DataFileError(f"{path}: column {_repeated(names)!r} appears twice")
        if not rows:
            raise DataFileError(f"{path} has columns but no rows")
        columns = {}
        for name in names:
            try:
                column = f.read(columns=[name]).column(0)
            except Exception as e:  # noqa: BLE001
                raise unreadable(e) from None
            columns[name] = _parquet_column(path, name, column, keep_text=text is None or name in text)
            del column
            pa.default_memory_pool().release_unused()   # else kept by the pool, not reused by numpy (606 -> 544 MB)
        return columns


def _parquet_column(path: str, name: str, column, keep_text: bool):
    """A Parquet column (a pyarrow ``ChunkedArray``) as :func:`read_table` gives it: a number column as
    float64 (nulls as NaN; integers rounded to the nearest float64, as Python's ``float`` does), finite,
    or an :class:`UnparsedColumn` holding the error :func:`_numeric` raises at its first missing or
    non-finite value; a column of only nulls and NaNs, which :func:`_is_numeric` does not find numeric,
    a column kept as text, and columns of other types as lists of pyarrow's Python values (text stripped of
    surrounding blanks, as in a CSV file)."""
    import pyarrow as pa

    kind = column.type
    if keep_text or not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        values = column.to_pylist()
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            values = [v.strip() if type(v) is str else v for v in values]   # as a CSV's values are
        return values
    try:
        # a copy in numpy's memory, not a view of pyarrow's: freed once in the feature matrix, it is reused by
        # what follows; pyarrow's allocator kept freed buffers (load_table's peak 745 -> 606 MB, tables_parquet.md)
        values = np.array(column.cast(pa.float64(), safe=False).to_numpy(), dtype=np.float64)
    except pa.ArrowException:                   # a cast this pyarrow lacks: its Python values then
        return column.to_pylist()
    finite = np.isfinite(values)
    if finite.all():
        return values
    if np.isnan(values).all():
        return column.to_pylist()
    first = int(np.argmin(finite))
    try:
        _numeric(path, name, values[:first + 1])   # raises for the value at `first`, naming its row
    except LLPInputError as e:
        return UnparsedColumn(e, len(values))
    raise AssertionError("unreachable: a value that is not finite passed _numeric")


class UnparsedColumn:
    """A numeric column (:func:`_is_numeric`) of a table with a value that is not a finite number:
    :func:`_numeric` raises ``error`` for it, as it would have for its values."""

    def __init__(self, error: LLPInputError, rows: int):
        self.error, self.rows = error, rows

    def __len__(self) -> int:
        return self.rows


class _ColumnReader:
    """One CSV column, read a block at a time: text while its kind is open, parsed block by block once
    :func:`_column_kind` of the values so far can no longer change (numbers or boolean words), kept as text
    otherwise."""

    def __init__(self, path: str, name: str, keep_text: bool):
        self.path, self.name = path, name
        self.kind = "text" if keep_text else "open"
        self.strings: list = []
        self.blocks: list = []
        self.rows, self.error = 0, None
        self.present = self.counted = 0         # present values among the first `counted` strings

    def add(self, values: tuple) -> None:
        """The next block of the column's values, as the CSV reader gave them (blanks around them kept:
        ``float`` and :func:`_missing` ignore them; text is stripped here)."""
        if self.kind in ("number", "boolean"):
            self._parse(values)
            return
        self.strings.extend(map(str.strip, values))
        if self.kind == "open" and self._settled():
            self._decide()

    def _settled(self) -> bool:
        """Whether more rows cannot change :func:`_column_kind`: it reads the present values among the first
        100 rows, or, where there are none, the first 100 present values (counted once each: a column left
        blank at the top is counted as it grows, not again at every block)."""
        s = self.strings
        if len(s) < 100:
            return False
        if not all(map(_missing, s[:100])):
            return True
        self.present += sum(1 for v in itertools.islice(s, self.counted, None) if not _missing(v))
        self.counted = len(s)
        return self.present >= 100

    def _decide(self) -> None:
        kind = _column_kind(self.strings)
        if kind is not None:
            self.kind, strings, self.strings = kind, self.strings, []
            self._parse(strings)
        else:
            self.kind = "text"

    def _parse(self, values: list) -> None:
        if self.error is None:
            try:
                self.blocks.append(_numeric(self.path, self.name, values, first_row=self.rows, kind=self.kind))
            except LLPInputError as e:
                self.error, self.blocks = e, []
        self.rows += len(values)

    def finish(self):
        if self.kind == "open":
            self._decide()
        if self.kind == "text":
            return self.strings
        if self.error is not None:
            return UnparsedColumn(self.error, self.rows)
        return np.concatenate(self.blocks) if self.blocks else np.empty(0)


def _read_csv(path: str, reader, block: int = 4096, text=None) -> dict:
    """The columns of a CSV ``reader``'s rows (:func:`read_table`), values stripped of surrounding blanks;
    blank lines are skipped. Rows are turned into columns a block at a time, in C (``zip``, ``map``), so
    that the rows of the whole file are never held at once. A block of 4,096 rows read a million rows of 22
    fields in 8.69 s at a peak of 477 MB, one of 65,536 in 11.03-11.43 s at 568-644 MB (fastest of 3;
    ``benchmarks/results/tables.md``, which has 1,024 to 8,192): a small block's strings stay in the
    processor's caches."""
    header = next(reader, None)
    if not header:
        raise DataFileError(f"{path} is empty (expected a header row of column names)")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DataFileError(f"{path}: column {_repeated(header)!r} appears twice in the header")
    keep = None if text is None else set(text)
    columns = [_ColumnReader(path, h, keep is None or h in keep) for h in header]
    width, rows, count = len(header), [], 0

    def flush():
        for column, values in zip(columns, zip(*rows)):
            column.add(values)
        rows.clear()

    for row in reader:
        if len(row) != width:
            if not row:
                continue
            raise DataFileError(f"{path}: line {reader.line_num} has {len(row)} fields, the header {width}")
        rows.append(row)
        count += 1
        if len(rows) == block:
            flush()
    flush()
    if not count:
        raise DataFileError(f"{path} has a header but no rows")
    return {h: c.finish() for h, c in zip(header, columns)}


#: Values that mean "missing" in a table cell (case-insensitive), besides Parquet's nulls.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})


def _missing(v) -> bool:
    """A missing number: empty, None, NaN or one of :data:`MISSING`."""
    return v is None or (isinstance(v, str) and v.strip().lower() in MISSING) or (isinstance(v, float) and math.isnan(v))


def _missing_name(v) -> bool:
    """A missing bag id or label: empty, None or NaN only ("NA" or "none" may name a bag or a class)."""
    return is_missing(v) or (isinstance(v, str) and not v.strip())


#: Words of a boolean column written as text (any case; pandas writes ``True`` and ``False``), as numbers:
#: a column of them is numeric, as a Parquet boolean column is (:func:`_column_kind`).
BOOLEAN_WORDS = {"true": 1.0, "false": 0.0}


def _boolean_word(v) -> bool:
    return isinstance(v, str) and v.strip().lower() in BOOLEAN_WORDS


def _leading_present(values) -> list:
    """A column's first 100 values that are present (or, where none of its first 100 rows has one, its first
    100 present values): what its kind is read from."""
    present = [v for v in values[:100] if not _missing(v)]
    if not present:                         # blank at the top: look further down
        present = [v for v in values if not _missing(v)][:100]
    return present


def _column_kind(values) -> str | None:
    """``"number"``, ``"boolean"`` or None (text): what a column holds, from :func:`_leading_present`: all
    numbers, or all words of :data:`BOOLEAN_WORDS`. A column that mixes the two, or has no value at all, is
    text. A column with missing values is then read, and its missing values reported, not silently left out."""
    present = _leading_present(values)
    if not present:
        return None
    if all(map(_boolean_word, present)):
        return "boolean"
    for v in present:
        try:
            float(v)
        except OverflowError:               # a number, too large: _numeric names it
            pass
        except (TypeError, ValueError):
            return None
    return "number"


def _numeric(path: str, name: str, values, first_row: int = 0, kind: str | None = None) -> np.ndarray:
    """A column as float64, every value finite; the first value that is not names its row (``values``
    starting at row ``first_row`` of the table, from 0). ``kind`` (:func:`_column_kind`, as decided for the
    whole column; by default what most of :func:`_leading_present` are, so that the error names a value of
    the other kind): ``"boolean"`` reads the words of :data:`BOOLEAN_WORDS` as 1 and 0 and nothing else,
    ``"number"`` numbers only."""
    if isinstance(values, UnparsedColumn):
        raise values.error
    if kind is None:
        present = _leading_present(values)
        kind = "boolean" if 2 * sum(map(_boolean_word, present)) > len(present) else "number"
    try:
        if kind == "boolean":
            out = np.fromiter((BOOLEAN_WORDS[v.strip().lower()] for v in values), dtype=np.float64, count=len(values))
        else:
            out = np.array(values, dtype=np.float64)       # Python's float() of each value, in C
        if out.shape == (len(values),) and np.isfinite(out).all():
            return out
    except (TypeError, ValueError, OverflowError, KeyError, AttributeError):
        pass
    def shown(v):                                       # a Parquet date as its text and type, not its repr
        return repr(v.strip()) if isinstance(v, str) else f"{v} ({type(v).__name__})"

    out = np.empty(len(values), dtype=np.float64)      # find the value at fault
    for i, v in enumerate(values):
        if _missing(v):
            out[i] = math.nan
        elif kind == "boolean":
            if not _boolean_word(v):
                raise LLPInputError(f"{path}: column {name!r} holds true and false, and {shown(v)} at row "
                                    f"{first_row + i + 1}")
            out[i] = BOOLEAN_WORDS[v.strip().lower()]
        else:
            try:
                out[i] = float(v)
            except (TypeError, ValueError, OverflowError):
                raise LLPInputError(f"{path}: column {name!r} is not numeric (row {first_row + i + 1}: "
                                    f"{shown(v)})") from None
        if not math.isfinite(out[i]):
            raise LLPInputError(f"{path}: column {name!r} has a missing or non-finite value at row {first_row + i + 1}")
    return out


def _is_numeric(values) -> bool:
    """Whether a column is numeric: read as numbers (:func:`read_table`), or :func:`_column_kind` finds
    numbers or boolean words."""
    if isinstance(values, (np.ndarray, UnparsedColumn)):     # found numeric as it was read (read_table)
        return True
    return _column_kind(values) is not None


def _labels(path: str, name: str, values, what: str) -> list[str]:
    """A column of names (bag ids, class labels) as strings; a missing one is an error."""
    if set(map(type, values)) <= {str} and "" not in values and not any(map(str.isspace, values)):
        return list(values)                     # (a CSV's column: checked in C)
    for i, v in enumerate(values):
        if _missing_name(v):
            raise LLPInputError(f"{path}: the {what} column {name!r} has no value at row {i + 1}")
    return [value_text(v) for v in values]


def value_text(v) -> str:
    """A bag id or label as text: a Parquet binary value decoded as UTF-8 where it is (``b0``, not ``b'b0'``)."""
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            pass
    return str(v)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def class_names_of(labels) -> tuple[np.ndarray, np.ndarray]:
    """``(class names, class of each row)`` from a label column read as text. Labels that are all
    numbers (finite, written plainly) are classes by value, in numeric order: ``2`` comes before ``10``,
    and ``7`` and ``7.0`` are one class, named ``7`` (a value written one way keeps its spelling:
    ``007`` stays ``007``). Other labels are sorted as text."""
    raw = [str(v) for v in labels]
    values = [int(v) if re.fullmatch(r"[+-]?\d+", v) else float(v) for v in raw   # ints exactly
              if _NUMBER.fullmatch(v)]
    values = [int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53 else v for v in values]
    if not raw or len(values) < len(raw) or not all(isinstance(v, int) or math.isfinite(v) for v in values):
        names, y = np.unique(np.asarray(raw, dtype=str), return_inverse=True)
        return names, y.ravel()
    order = sorted(set(values))
    spellings: dict = {}
    for v, text in zip(values, raw):
        spellings.setdefault(v, set()).add(text)
    names = [next(iter(spellings[v])) if len(spellings[v]) == 1 else (str(v) if isinstance(v, int) else repr(v))
             for v in order]
    position = {v: i for i, v in enumerate(order)}
    return np.asarray(names), np.array([position[v] for v in values], dtype=np.int64)


def _column(path, cols, name, what):
    if name not in cols:
        raise LLPInputError(f"{path} has no {what} column {name!r} (columns: {', '.join(cols)})")
    return cols[name]


def feature_matrix(path: str, cols: dict, names, *, predicting: bool = False) -> np.ndarray:
    """The (rows, features) float32 matrix of columns ``names``; every value finite in float32. Filled a
    column at a time: no float64 copy of the whole matrix (``benchmarks/results/tables.md``)."""
    if not names:
        raise LLPInputError(f"{path}: no feature columns given")
    x, first_big = None, None               # (row, feature) of the first value too large, row-major
    for j, n in enumerate(names):
        column = _numeric(path, n, _column(path, cols, n, "feature"))
        if x is None:
            x = np.empty((len(column), len(names)), dtype=np.float32)
        big = np.flatnonzero(np.abs(column) > 1e30)   # float32 holds up to 3.4e38 (statistics: float64)
        if big.size:
            if first_big is None or big[0] < first_big[0]:
                first_big = (int(big[0]), j, column[big[0]])
            continue                                    # (not cast: an error follows)
        x[:, j] = column
    if first_big is not None:
        i, j, value = first_big
        raise LLPInputError(f"{path}: column {names[j]!r} has a value beyond +-1e30 at row {i + 1} ({value:.3g}); "
                            + ("the model was trained on smaller values: scale the column as its training table was"
                               if predicting else "rescale it (float32 features)"))
    return x


def bag_columns(bag_column: str | None) -> list[str]:
    """The column names of ``--bag-column a,b`` (:func:`column_names`); none given is an error."""
    if not bag_column:
        raise LLPInputError("a table needs --bag-column (the column that names each row's bag)")
    return column_names("--bag-column", bag_column)


def column_names(option: str, value) -> list[str]:
    """The column names an option gives, comma-separated (or a list), blanks around a name ignored; none, or
    a name twice, is an error."""
    names = [c.strip() for c in (value.split(",") if isinstance(value, str) else value) if c.strip()]
    if not names:
        raise LLPInputError(f"{option} {value!r} names no columns; give comma-separated column names")
    if len(set(names)) != len(names):
        raise LLPInputError(f"{option} names a column twice: {value!r}")
    return names


#: pandas writes an unnamed index into a Parquet file as columns named so (not data: never a feature)
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


def load_table(path: str, *, bag_column: str | None, features=None, label_column: str | None = None,
               proportions: str | None = None, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """A :class:`Dataset` from a table (module docstring); its ``bags`` are the training bags."""
    bag_cols = bag_columns(bag_column)
    if (label_column is None) == (proportions is None):
        raise LLPInputError("a table needs exactly one of --proportions FILE or --label-column COL")
    if label_column is not None:
        label_column = label_column.strip()
        if label_column in bag_cols:
            raise LLPInputError(f"--label-column {label_column!r} is also the bag column; the labels and the bags "
                                "are two columns")
    cols = read_table(path, text=[*bag_cols, label_column])
    parts = [_labels(path, c, _column(path, cols, c, "bag"), "bag") for c in bag_cols]
    if len(parts) > 1:
        _no_separator(path, bag_cols, parts)
    bag_vals = np.asarray(["|".join(vals) for vals in zip(*parts)])     # feature bags: equal values of the columns
    skip = {*bag_cols, label_column}
    if features:
        names = column_names("--features", features)
        taken = next((n for n in names if n in skip), None)
        if taken is not None:
            what = "label" if taken == label_column else "bag"
            raise LLPInputError(f"--features names the {what} column {taken!r}; a feature is neither the bag nor "
                                "the label column")
    else:
        names = [c for c in cols if c not in skip and c and not _PANDAS_INDEX.fullmatch(c) and _is_numeric(cols[c])]
        if not names:
            raise LLPInputError(f"{path} has no numeric feature columns besides {', '.join(sorted(s for s in skip if s))}")
    x = feature_matrix(path, cols, names)
    for name in names:                  # their float64 values are in x now: let them go before x is split
        del cols[name]
    bag_names, bag_index = np.unique(bag_vals, return_inverse=True)
    if label_column is not None:
        class_names, y = class_names_of(_labels(path, label_column, _column(path, cols, label_column, "label"),
                                                "label"))
        k = len(class_names)
        if k < 2:
            raise LLPInputError(f"{path}: label column {label_column!r} holds a single class")
        rng = np.random.default_rng(seed)
        m = len(bag_names)
        n_test = int(round(test_fraction * m)) if m > 1 else 0
        if n_test >= m:
            raise LLPInputError(f"--test-fraction {test_fraction} holds out all {m} bags of {path}; leave some to "
                                "train on")
        test_bags = set(rng.permutation(m)[:n_test].tolist())
        is_test = np.array([b in test_bags for b in bag_index])
        tr = np.flatnonzero(~is_test)
        ids, local = np.unique(bag_index[tr], return_inverse=True)
        counts = np.zeros((len(ids), k))
        np.add.at(counts, (local, y[tr]), 1)
        bags = bags_from_ids(local, counts=counts)
        ds = Dataset(f"table:{os.path.basename(path)}", x[tr], y[tr], x[is_test], y[is_test],
                     [str(c) for c in class_names])
        ds.bag_names = bag_names[ids]
        te = np.flatnonzero(is_test)
        if te.size:                                 # the held-out bags themselves: the test bags' error
            _, test_local = np.unique(bag_index[te], return_inverse=True)
            test_counts = np.zeros((int(test_local.max()) + 1, k))
            np.add.at(test_counts, (test_local, y[te]), 1)
            ds.test_bags = bags_from_ids(test_local, counts=test_counts)
    else:
        bags, class_names, used = _proportions_table(proportions, bag_cols, bag_names, bag_index)
        ds = Dataset(f"table:{os.path.basename(path)}", x, None, x[:0], None, class_names)
        ds.bag_names = bag_names
    ds.bags = bags
    ds.feature_names = names
    mean, std = feature_statistics(ds.x_train)
    ds.normalization = {"mean": mean.tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
    return ds


def feature_statistics(x: np.ndarray, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and (population) standard deviation, in float64, as ``x.mean(0, dtype=float64)``
    and ``x.std(0, dtype=float64)`` give them (two passes: the mean, then the mean squared deviation from
    it), taken a block of rows at a time: numpy's ``std`` makes a float64 copy of the whole matrix, twice
    the size of the float32 features themselves (``benchmarks/results/tables.md``)."""
    n = len(x)
    if not n:
        raise LLPInputError("no training rows to standardise the features with")
    total = np.zeros(x.shape[1])
    for i in range(0, n, block):
        total += x[i:i + block].sum(0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(x.shape[1])
    for i in range(0, n, block):
        d = x[i:i + block] - mean                   # float64 (mean is)
        squares += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(squares / n)


def _no_separator(path: str, columns: list, parts: list) -> None:
    """Several bag columns' values are joined by ``|`` into one bag id: a value holding ``|`` would make two
    bags one (``x|y`` + ``z`` and ``x`` + ``y|z``)."""
    for name, values in zip(columns, parts):
        row = next((i for i, v in enumerate(values) if "|" in v), None)
        if row is not None:
            raise LLPInputError(f"{path}: the bag column {name!r} has a value with '|' at row {row + 1} "
                                f"({values[row]!r}); the values of several bag columns are joined by '|' into "
                                "one bag id, so they may not hold it")


def _same_number(name: str, names: list) -> str | None:
    """The first of ``names`` that is the same number as ``name`` written otherwise (``0.0`` for ``0``)."""
    try:
        value = float(name)
    except ValueError:
        return None
    for other in names:
        try:
            if other != name and float(other) == value:
                return other
        except ValueError:
            pass
    return None


def _proportions_table(path, bag_cols, bag_names, bag_index):
    cols = read_table(path)
    names = list(cols)
    id_col = next((c for c in (",".join(bag_cols), "|".join(bag_cols)) if c in cols), names[0])
    class_cols = [c for c in names if c != id_col]
    if len(class_cols) < 2:
        raise LLPInputError(f"{path}: expected a bag id column and one column per class (at least 2)")
    ids = [value_text(v) for v in cols[id_col]]           # (as the data table's ids are: _labels)
    if len(set(ids)) != len(ids):
        raise LLPInputError(f"{path}: bag {_repeated(ids)!r} appears twice")     # the first id seen again
    table = np.stack([_numeric(path, c, cols[c], kind="number") for c in class_cols], axis=1)
    pos = {b: i for i, b in enumerate(ids)}
    known = set(bag_names.tolist())
    extra = [b for b in ids if b not in known]
    if extra:
        shown = ", ".join(repr(b) for b in bag_names[:3].tolist()) + (", ..." if len(bag_names) > 3 else "")
        twin = _same_number(extra[0], bag_names.tolist())
        raise LLPInputError(f"{path} gives proportions for bag {extra[0]!r}, which has no rows in the data table "
                            f"(its bags: {shown}" + (f"; bag ids are compared as text, and {twin!r} is not {extra[0]!r}: "
                                                     "write them alike in both files" if twin else "") + ")")
    missing = [b for b in bag_names.tolist() if b not in pos]
    if missing:
        raise LLPInputError(f"bag {missing[0]!r} has rows but no proportions in {path}")
    table = table[[pos[b] for b in bag_names.tolist()]]
    is_counts = bool((table == np.round(table)).all() and (table.sum(1) > 1 + 1e-6).any())
    try:
        bags = bags_from_ids(bag_index, **{"counts" if is_counts else "proportions": table}, bag_names=bag_names)
    except LLPInputError as e:
        raise LLPInputError(f"{path}: {e}") from None
    return bags, class_cols, ids
