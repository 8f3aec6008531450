"""Read DIALS reflection tables (``.refl``, msgpack) into numpy columns without DIALS.

File layout (DIALS ≥ 2, checked on files written by DIALS 3.12; see
``dials/array_family/reflection_table_msgpack_adapter.h``)::

    ["dials::af::reflection_table", 1,
     {"identifiers": {id: uuid, ...},
      "nrows": N,
      "data": {column: [type_name, [N, <raw little-endian bytes>]], ...}}]

Each numeric column is one binary blob of N fixed-size elements.  Type names
and the numpy form returned here:

=========================  =====================  =========================
DIALS type                 numpy dtype            shape
=========================  =====================  =========================
``bool``                   bool                   (N,)
``int``                    int32                  (N,)
``std::size_t``            uint64                 (N,)
``double``                 float64                (N,)
``vec2<double>``           float64                (N, 2)
``vec3<double>``           float64                (N, 3)
``mat3<double>``           float64                (N, 3, 3) (row-major)
``int6``                   int32                  (N, 6)  (x0, x1, y0, y1, z0, z1)
``cctbx::miller::index<>`` int32                  (N, 3)  (h, k, l)
=========================  =====================  =========================

``Shoebox<>`` and ``std::string`` columns are not decoded (listed in
:attr:`ReflectionTable.skipped`).  Useful columns: ``miller_index``,
``id`` (experiment index), ``flags`` (bit set, see :data:`FLAGS`),
``xyzobs.px.value`` (x, y in px, z in images counted from 0 at the start of
the scan), ``intensity.sum.value`` / ``.variance``, ``intensity.prf.value``,
``intensity.scale.value``, ``inverse_scale_factor``, ``d`` (Å),
``partiality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np

from mxflow.errors import BadInputError

#: dtype and per-row shape of each DIALS column type
COLUMN_TYPES: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "bool": (np.dtype(np.bool_), ()),
    "int": (np.dtype("<i4"), ()),
    "std::size_t": (np.dtype("<u8"), ()),
    "double": (np.dtype("<f8"), ()),
    "vec2<double>": (np.dtype("<f8"), (2,)),
    "vec3<double>": (np.dtype("<f8"), (3,)),
    "mat3<double>": (np.dtype("<f8"), (3, 3)),
    "int6": (np.dtype("<i4"), (6,)),
    "cctbx::miller::index<>": (np.dtype("<i4"), (3,)),
}

#: bit values of the ``flags`` column (dials.array_family.flex.reflection_table.flags)
FLAGS: dict[str, int] = {
    "predicted": 1 << 0,
    "observed": 1 << 1,
    "indexed": 1 << 2,
    "used_in_refinement": 1 << 3,
    "strong": 1 << 5,
    "reference_spot": 1 << 6,
    "dont_integrate": 1 << 7,
    "integrated_sum": 1 << 8,
    "integrated_prf": 1 << 9,
    "integrated": (1 << 8) | (1 << 9),
    "overloaded": 1 << 10,
    "overlapped_bg": 1 << 11,
    "overlapped_fg": 1 << 12,
    "in_powder_ring": 1 << 13,
    "foreground_includes_bad_pixels": 1 << 14,
    "background_includes_bad_pixels": 1 << 15,
    "used_in_modelling": 1 << 16,
    "centroid_outlier": 1 << 17,
    "failed_during_background_modelling": 1 << 18,
    "failed_during_summation": 1 << 19,
    "failed_during_profile_fitting": 1 << 20,
    "bad_reference": 1 << 21,
    "user_excluded_in_scaling": 1 << 22,
    "outlier_in_scaling": 1 << 23,
    "excluded_for_scaling": 1 << 24,
    "excluded_for_refinement": 1 << 25,
    "scaled": 1 << 26,
}

MAGIC = "dials::af::reflection_table"


@dataclass
class ReflectionTable:
    """Columns of a DIALS reflection table as numpy arrays (see module docstring)."""

    nrows: int
    columns: dict[str, np.ndarray]
    identifiers: dict[int, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.nrows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def has_flag(self, name: str) -> np.ndarray:
        """Boolean mask of rows whose ``flags`` include all bits of flag ``name``.

        For the composite flag ``integrated`` any of its bits counts, as in DIALS'
        ``get_flags(flags.integrated, all=False)``.
        """
        bits = np.uint64(FLAGS[name])
        flags = self.columns["flags"].astype(np.uint64)
        if name == "integrated":
            return (flags & bits) != 0
        return (flags & bits) == bits

    def select(self, mask: np.ndarray) -> ReflectionTable:
        """A new table with the rows where ``mask`` is True (or the given indices)."""
        cols = {k: v[mask] for k, v in self.columns.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        return ReflectionTable(
            n, cols, dict(self.identifiers), dict(self.types), list(self.skipped)
        )


def decode_column(type_name: str, nrows: int, payload: list, name: str = "") -> np.ndarray:
    """numpy array of one column from its ``[N, bytes]`` payload."""
    dtype, shape = COLUMN_TYPES[type_name]
    n, blob = payload
    if n != nrows:
        raise ValueError(f"column {name!r} has {n} rows, table has {nrows}")
    arr = np.frombuffer(blob, dtype=dtype)
    expected = nrows * int(np.prod(shape, dtype=int))
    if arr.size != expected:
        raise ValueError(
            f"column {name!r} ({type_name}) holds {arr.size} values, expected {expected}"
        )
    return arr.reshape((nrows, *shape)).copy()


def read_reflections(path: str | Path, columns: list[str] | None = None) -> ReflectionTable:
    """Read a DIALS ``.refl`` file; only ``columns`` if given (all decodable ones otherwise).

    The file is streamed: columns not asked for are skipped without being
    kept, and with ``columns=[]`` (identifiers and row count only) reading
    stops before the data.  A 350 MB scaled.refl of 200 datasets so costs
    its identifiers, not 800 MB.  Raises BadInputError naming the file if
    it is not a msgpack reflection table (e.g. an old pickle-format table)
    or a requested column is missing.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _read_table(fh, path, columns)
    except OSError as exc:
        raise BadInputError(path, f"cannot read reflection table ({exc})") from exc
    except BadInputError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise BadInputError(path, "not a DIALS msgpack reflection table") from exc


def _read_table(fh, path: Path, columns: list[str] | None) -> ReflectionTable:
    up = msgpack.Unpacker(fh, raw=False, strict_map_key=False, max_buffer_size=0)
    if up.read_array_header() != 3 or up.unpack() != MAGIC:
        raise BadInputError(path, "not a DIALS msgpack reflection table")
    up.skip()  # format version
    nrows: int | None = None
    identifiers: dict[int, str] = {}
    payloads: dict[str, tuple[str, list]] = {}
    types: dict[str, str] = {}
    skipped: list[str] = []
    order: list[str] = []
    wanted = None if columns is None else set(columns)
    for _ in range(up.read_map_header()):
        key = up.unpack()
        if key == "nrows":
            nrows = int(up.unpack())
        elif key == "identifiers":
            identifiers = {int(k): str(v) for k, v in (up.unpack() or {}).items()}
        elif key == "data":
            if wanted is not None and not wanted and nrows is not None:
                break  # identifiers and row count are all that was asked for
            for _ in range(up.read_map_header()):
                name = up.unpack()
                if up.read_array_header() != 2:
                    raise BadInputError(path, f"column {name!r} is not [type, data]")
                type_name = up.unpack()
                order.append(name)
                types[name] = type_name
                if wanted is not None and name not in wanted:
                    up.skip()
                elif type_name not in COLUMN_TYPES:
                    if wanted is not None:
                        raise BadInputError(
                            path, f"column {name!r} of type {type_name} is not supported"
                        )
                    skipped.append(name)
                    up.skip()
                else:
                    payloads[name] = (type_name, up.unpack())
        else:
            up.skip()
    nrows = nrows or 0
    cols: dict[str, np.ndarray] = {}
    for name in order if columns is None else columns:
        if name in skipped:
            continue
        if name not in payloads:
            raise BadInputError(path, f"reflection table has no column {name!r}")
        type_name, payload = payloads[name]
        try:
            cols[name] = decode_column(type_name, nrows, payload, name)
        except ValueError as exc:
            raise BadInputError(path, str(exc)) from exc
    if columns is not None:
        types = {k: v for k, v in types.items() if k in cols}
    return ReflectionTable(nrows, cols, identifiers, types, skipped)


def count_rows(path: str | Path) -> int:
    """Number of reflections in a ``.refl`` file (stops before the data)."""
    return read_reflections(path, columns=[]).nrows
