"""Readers for the published hls4ml 5-class jet benchmark (OpenML 42468, "hls4ml_lhc_jets_hlf").

The published high-level-feature data (Duarte et al., arXiv:1804.06913) comes as OpenML ARFF, and is
commonly re-saved as parquet, CSV or HDF5. Every reader returns a :class:`~fastml.data.table.Table` with
features in ``JET_FEATURES`` order and labels in ``JET_CLASSES`` order. Labels come from a ``class``
column (values g, q, w, z, t in any case) or from one-hot columns ``j_g, j_q, j_w, j_z, j_t`` (the
hls4ml jet tutorial / original HDF5 files, whose feature columns carry a ``j_`` prefix).
Nothing here downloads anything.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError
from .constituents import DEFAULT_PARTICLE_FEATURES, check_particle_features, derive_particle_features
from .table import JET_CLASSES, JET_FEATURES, Table

#: OpenML data-set id and name of the benchmark.
OPENML_ID: int = 42468
OPENML_NAME: str = "hls4ml_lhc_jets_hlf"
#: File names looked for in the cache directory, in this order.
OPENML_FILENAMES: tuple[str, ...] = tuple(
    f"{stem}{ext}"
    for stem in (OPENML_NAME, f"openml_{OPENML_ID}", f"dataset_{OPENML_ID}")
    for ext in (".arff", ".arff.gz", ".parquet", ".csv", ".csv.gz", ".h5", ".hdf5")
)
#: Class-column values (lower-cased) -> label index in JET_CLASSES.
_CLASS_VALUES: dict[str, int] = {c.lower(): i for i, c in enumerate(JET_CLASSES)}
#: One-hot label columns of the hls4ml jet tutorial, in JET_CLASSES order.
ONE_HOT_COLUMNS: tuple[str, ...] = tuple(f"j_{c.lower()}" for c in JET_CLASSES)


def default_cache_dir() -> Path:
    """Directory searched by :func:`load_openml_42468`: ``$FASTML_DATA_DIR/openml`` if the variable is
    set, else ``~/.cache/fastml/openml``."""
    root = os.environ.get("FASTML_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "fastml"
    return base / "openml"


def load_openml_42468(cache_dir: Path | None = None) -> Table:
    """Load OpenML 42468 from a local file in ``cache_dir`` (default :func:`default_cache_dir`).

    Looks for the names in ``OPENML_FILENAMES`` (first match wins) and never downloads. Raises
    DataError with one line saying which file to put where when none is present.
    """
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    for name in OPENML_FILENAMES:
        candidate = directory / name
        if candidate.is_file():
            table = load_published(candidate)
            return Table(
                table.x,
                table.y,
                table.feature_names,
                table.class_names,
                {**table.metadata, "dataset": f"OpenML {OPENML_ID} ({OPENML_NAME})"},
            )
    raise DataError(
        f"OpenML {OPENML_ID} not found: place {OPENML_NAME}.arff (from https://www.openml.org/d/{OPENML_ID}; "
        f".parquet/.csv/.h5 also accepted) in {directory} (or set FASTML_DATA_DIR)"
    )


def load_published(path: str | Path) -> Table:
    """Read a benchmark file by suffix: .arff(.gz), .parquet/.pq, .csv(.gz), .h5/.hdf5/.hdf.

    Guarantees the Table contract (float32 x in JET_FEATURES order, int64 y in JET_CLASSES order);
    raises DataError (one line) for missing files, unknown formats, missing columns or unknown labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"jet data file not found: {path}")
    name = path.name.lower()
    if name.endswith((".arff", ".arff.gz")):
        columns, fmt = _read_arff(path), "arff"
    elif name.endswith((".parquet", ".pq")):
        columns, fmt = _read_parquet(path), "parquet"
    elif name.endswith((".csv", ".csv.gz")):
        columns, fmt = _read_csv(path), "csv"
    elif name.endswith((".h5", ".hdf5", ".hdf")):
        columns, fmt = _read_hdf5(path), "hdf5"
    else:
        raise DataError(
            f"unknown jet data format {path.suffix!r} for {path}: use .arff, .parquet, .csv or .h5"
        )
    return table_from_columns(columns, source=str(path), fmt=fmt)


def table_from_columns(columns: Mapping[str, np.ndarray], source: str = "", fmt: str = "") -> Table:
    """Build a Table from named columns using the benchmark's names (optionally ``j_``-prefixed).

    Label columns: ``class`` (any case) with values g/q/w/z/t (any case, quotes stripped), or the one-hot
    columns ``j_g ... j_t`` with exactly one set per row. Raises DataError if anything is missing.
    """
    by_name = {k.strip().lower(): k for k in columns}
    feats = []
    missing = []
    for feat in JET_FEATURES:
        key = by_name.get(feat) or by_name.get(f"j_{feat}")
        if key is None:
            missing.append(feat)
        else:
            feats.append(np.asarray(columns[key], dtype=np.float64))
    if missing:
        raise DataError(f"{source or 'jet data'}: missing feature column(s) {', '.join(missing)}")
    x = np.stack(feats, axis=1).astype(np.float32)
    if "class" in by_name:
        y = _labels_from_class(columns[by_name["class"]], source)
    elif all(c in by_name for c in ONE_HOT_COLUMNS):
        y = _labels_from_one_hot([columns[by_name[c]] for c in ONE_HOT_COLUMNS], source)
    else:
        raise DataError(
            f"{source or 'jet data'}: no 'class' column and no one-hot columns {', '.join(ONE_HOT_COLUMNS)}"
        )
    return Table(
        x=x,
        y=y,
        feature_names=JET_FEATURES,
        class_names=JET_CLASSES,
        metadata={"source": source, "format": fmt, "n_rows": int(x.shape[0])},
    )


def _labels_from_class(values: Iterable[Any], source: str) -> np.ndarray:
    names = np.array([_clean(v).lower() for v in values], dtype=object)
    unknown = sorted(set(names) - set(_CLASS_VALUES))
    if unknown:
        raise DataError(
            f"{source or 'jet data'}: unknown class value(s) {unknown[:5]}, expected g, q, w, z, t"
        )
    return np.array([_CLASS_VALUES[v] for v in names], dtype=np.int64)


def _labels_from_one_hot(cols: list[np.ndarray], source: str) -> np.ndarray:
    onehot = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)
    bad = int(np.count_nonzero((onehot > 0.5).sum(axis=1) != 1))
    if bad:
        raise DataError(
            f"{source or 'jet data'}: {bad} row(s) without exactly one of {', '.join(ONE_HOT_COLUMNS)} set"
        )
    return np.argmax(onehot, axis=1).astype(np.int64)


def _clean(value: Any) -> str:
    """Text of a cell without surrounding whitespace/quotes (bytes decoded as UTF-8)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip().strip("'\"")


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _columns_from_rows(
    names: list[str], rows: Iterable[list[str]], text_columns: set[str]
) -> dict[str, np.ndarray]:
    """Turn parsed text rows into columns: float64, or stripped strings for ``text_columns``."""
    raw: list[list[str]] = [[] for _ in names]
    for row in rows:
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise DataError(f"row with {len(row)} values, expected {len(names)}")
        for col, cell in zip(raw, row, strict=True):
            col.append(cell)
    out: dict[str, np.ndarray] = {}
    for name, col in zip(names, raw, strict=True):
        if name.lower() in text_columns:
            out[name] = np.array([_clean(c) for c in col], dtype=object)
        else:
            try:
                out[name] = np.array(col, dtype=np.float64)
            except ValueError as exc:
                raise DataError(f"non-numeric value in column {name!r}: {exc}") from exc
    return out


def _read_arff(path: Path) -> dict[str, np.ndarray]:
    """Minimal ARFF reader (dense data only): @attribute names/types, then comma-separated @data rows.

    Nominal and string attributes are kept as text, numeric ones parsed as float64; '%' lines are comments.
    """
    names: list[str] = []
    text_columns: set[str] = set()
    with _open_text(path) as fh:
        for line in fh:
            stripped = line.strip()
            if not stripped or stripped.startswith("%"):
                continue
            lower = stripped.lower()
            if lower.startswith("@attribute"):
                rest = stripped[len("@attribute") :].strip()
                if rest[0] in "'\"":
                    end = rest.index(rest[0], 1)
                    name, kind = rest[1:end], rest[end + 1 :].strip()
                else:
                    name, _, kind = rest.partition(" ")
                    kind = kind.strip()
                names.append(name)
                if not kind.lower().startswith(("numeric", "real", "integer")):
                    text_columns.add(name.lower())
            elif lower.startswith("@data"):
                break
        else:
            raise DataError(f"{path}: no @data section, not an ARFF file")
        if not names:
            raise DataError(f"{path}: no @attribute lines, not an ARFF file")
        data_lines = (ln for ln in fh if ln.strip() and not ln.lstrip().startswith("%"))
        first = next(data_lines, None)
        if first is not None and first.lstrip().startswith("{"):
            raise DataError(f"{path}: sparse ARFF is not supported")
        lines = itertools.chain([first] if first is not None else [], data_lines)
        # ARFF quotes nominal values with single (or double) quotes; the csv module handles either one.
        reader = csv.reader(lines, quotechar="'", skipinitialspace=True)
        try:
            return _columns_from_rows(names, reader, text_columns)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from exc


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """CSV with a header row; ``class`` is kept as text, every other column parsed as float64."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration as exc:
            raise DataError(f"{path}: empty CSV file") from exc
        # pandas writes an unnamed index column first; drop it so column counts still match.
        drop_index = bool(header) and header[0] == ""
        rows = (row[1:] for row in reader) if drop_index else reader
        names = header[1:] if drop_index else header
        try:
            return _columns_from_rows(names, rows, {"class"})
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from exc


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError("reading parquet needs pyarrow: pip install pyarrow") from exc
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """HDF5 layouts accepted, first match wins:

    1. a 2-D dataset ``jets`` with the column names in ``jetFeatureNames`` (original hls4ml jet files);
    2. a 1-D compound (structured) dataset whose field names are the columns (e.g. ``table``);
    3. one 1-D dataset per column, at the root or in a single top-level group.
    """
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading HDF5 needs h5py: pip install h5py") from exc
    with h5py.File(path, "r") as fh:
        if "jets" in fh and "jetFeatureNames" in fh:
            data = fh["jets"][()]
            names = [_clean(n) for n in fh["jetFeatureNames"][()]]
            if data.ndim != 2 or data.shape[1] != len(names):
                raise DataError(
                    f"{path}: 'jets' shape {data.shape} does not match {len(names)} jetFeatureNames"
                )
            return {name: data[:, i] for i, name in enumerate(names)}
        groups = [fh] + [fh[k] for k in fh if isinstance(fh[k], h5py.Group)]
        for group in groups:
            for key in group:
                obj = group[key]
                if isinstance(obj, h5py.Dataset) and obj.dtype.names and obj.ndim == 1:
                    arr = obj[()]
                    return {name: arr[name] for name in arr.dtype.names}
        for group in groups:
            cols = {
                k: group[k][()] for k in group if isinstance(group[k], h5py.Dataset) and group[k].ndim == 1
            }
            if cols:
                return cols
    raise DataError(
        f"{path}: no jet table found (expected 'jets'+'jetFeatureNames', a compound dataset, "
        "or one dataset per column)"
    )


#: Datasets of the hls4ml LHC jet particle files (Zenodo 3602260, the JEDI-net 30/50/100/150-particle
#: files ``jetImage_*_<N>p_*.h5``): constituents (jets, N, 16), their names, and the per-jet table
#: whose ``j_g ... j_t`` columns are the one-hot labels.
HLS4ML_PARTICLE_DATASETS: tuple[str, ...] = ("jetConstituentList", "particleFeatureNames", "jets", "jetFeatureNames")
#: fastml's base per-particle quantities -> column of ``particleFeatureNames`` holding it.
HLS4ML_PARTICLE_COLUMNS: dict[str, str] = {
    "pt_rel": "j1_ptrel",
    "deta": "j1_etarel",
    "dphi": "j1_phirel",
    "pt": "j1_pt",
    "e": "j1_e",
    "e_rel": "j1_erel",
    "eta": "j1_eta",
    "phi": "j1_phi",
    "px": "j1_px",
    "py": "j1_py",
    "pz": "j1_pz",
}
#: Base quantities each derived feature needs (features not listed are base quantities themselves).
_NEEDS: dict[str, tuple[str, ...]] = {
    "delta_r": ("deta", "dphi"),
    "log_pt": ("pt",),
    "log_e": ("e",),
    "log_pt_rel": ("pt_rel",),
    "log_e_rel": ("e_rel",),
}


def load_published_particles(
    path: str | Path, n_particles: int | None = None, features: Iterable[str] | None = None
) -> Table:
    """Read hls4ml LHC jet particle files (one ``.h5`` or a folder of them) into a particle Table.

    Guarantees: x (jets, n_particles, len(features)) float32 with each jet's constituents sorted by pT
    (descending) and cut to the leading ``n_particles`` (default: all the file has, 30 or 150), padded
    particles all zero; y int64 in ``JET_CLASSES`` order. Raises DataError (one line naming the file) for
    a missing file, a missing dataset or column, or more particles asked for than a file has.
    """

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".h5", ".hdf5"))
        if not files:
            raise DataError(f"{path}: no .h5 files in this folder; expected hls4ml jet particle files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"jet particle file not found: {path}")
    names = check_particle_features(
        tuple(features) if features is not None else DEFAULT_PARTICLE_FEATURES, str(path), has_pid=False
    )
    needed = sorted({"pt", *(q for f in names for q in _NEEDS.get(f, (f,)))})
    xs, ys = [], []
    for file in files:
        x, y = _read_particle_file(file, needed, n_particles, names, derive_particle_features)
        if xs and x.shape[1] != xs[0].shape[1]:
            raise DataError(f"{file}: {x.shape[1]} particles per jet, but {files[0]} has {xs[0].shape[1]}")
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)
    meta = {
        "source": str(path),
        "format": "hls4ml jet particle HDF5 (jetConstituentList)",
        "files": [f.name for f in files],
        "n_particles": int(x.shape[1]),
        "particle_features": list(names),
    }
    return Table(x, np.concatenate(ys), names, JET_CLASSES, meta)


def _read_particle_file(
    file: Path, needed: list[str], n_particles: int | None, names: tuple[str, ...], derive: Any
) -> tuple[np.ndarray, np.ndarray]:
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading HDF5 needs h5py: pip install h5py") from exc
    try:
        fh = h5py.File(file, "r")
    except OSError as exc:
        raise DataError(f"{file}: not a readable HDF5 file ({' '.join(str(exc).split())})") from exc
    with fh:
        for key in HLS4ML_PARTICLE_DATASETS:
            if key not in fh:
                raise DataError(
                    f"{file}: no dataset {key!r} (has: {', '.join(fh) or 'nothing'}); expected the hls4ml jet "
                    f"particle layout ({', '.join(HLS4ML_PARTICLE_DATASETS)})"
                )
        pnames = [_clean(n) for n in fh["particleFeatureNames"][()]]
        jnames = [_clean(n).lower() for n in fh["jetFeatureNames"][()]]
        constituents = fh["jetConstituentList"]
        if constituents.ndim != 3 or constituents.shape[2] != len(pnames):
            raise DataError(f"{file}: 'jetConstituentList' has shape {constituents.shape}, expected "
                            f"(jets, particles, {len(pnames)}) to match 'particleFeatureNames'")
        missing = [HLS4ML_PARTICLE_COLUMNS[q] for q in needed if HLS4ML_PARTICLE_COLUMNS[q] not in pnames]
        if missing:
            raise DataError(f"{file}: 'particleFeatureNames' lacks {', '.join(missing)}")
        have = int(constituents.shape[1])
        keep = have if n_particles is None else n_particles
        if not 1 <= keep <= have:
            raise DataError(f"{file}: data.n_particles: expected 1..{have} (the particles per jet in the file), "
                            f"got {n_particles}")
        cols = sorted({pnames.index(HLS4ML_PARTICLE_COLUMNS[q]) for q in needed})
        raw = constituents[:, :, cols]  # h5py reads a column subset only in increasing order
        jets = fh["jets"][()]
        if jets.ndim != 2 or jets.shape[1] != len(jnames) or jets.shape[0] != raw.shape[0]:
            raise DataError(f"{file}: 'jets' has shape {jets.shape}, expected ({raw.shape[0]}, {len(jnames)})")
    absent = [c for c in ONE_HOT_COLUMNS if c not in jnames]
    if absent:
        raise DataError(f"{file}: 'jetFeatureNames' lacks the label column(s) {', '.join(absent)}")
    y = _labels_from_one_hot([jets[:, jnames.index(c)] for c in ONE_HOT_COLUMNS], str(file))
    base = {q: raw[:, :, cols.index(pnames.index(HLS4ML_PARTICLE_COLUMNS[q]))].astype(np.float64) for q in needed}
    # Leading particles by pT: the files are not guaranteed to be sorted, and padding (pT = 0) sorts last.
    order = np.argsort(-base["pt"], axis=1, kind="stable")[:, :keep]
    base = {q: np.take_along_axis(v, order, axis=1) for q, v in base.items()}
    return derive(base, base["pt"] > 0, names), y
