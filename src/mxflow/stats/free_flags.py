"""The free set: which reflections refinement must leave out, the same in every file of a crystal.

CCP4 convention: an integer column ``FreeR_flag`` with values 0–19, where 0
marks the test set (5 % of the reflections).  Every symmetry equivalent and
Friedel mate of a reflection gets the same flag.

mxflow draws no random set to store and look up: a reflection's flag is a
hash of its symmetry-unique Miller index (in the data's space group and
setting).  So every merged MTZ of one crystal form — each cluster, each
per-dataset ``merged.mtz``, every rerun — carries the same flag for the
same reflection, and data that reach a higher resolution later extend the
set without redrawing it.  Datasets indexed in another setting of an
ambiguous lattice (before dials.cosym made them consistent) have flags in
their own setting.

A free set can instead be taken from an existing MTZ (``--free-flags``, the
sample sheet's ``free_flags`` column), as xia2's ``r_free_flags.extend`` and
KAMO's ``reference.data`` do: :func:`read_free_flag_source` reads its flags
(CCP4 0–19, or a two-valued set such as phenix's ``R-free-flags`` with 1 =
test set, converted), and :func:`apply_free_flag_source` gives a merged MTZ
the source's flag for every reflection the source has — after reindexing the
data into the source's setting of an ambiguous lattice, chosen by the CC of
intensities or by the cell — and the hash flag (of the index in the source's
setting) for the reflections beyond it.  The MTZ history says which file,
which operator and how many flags were copied and extended.
"""

from __future__ import annotations

import argparse
import functools
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np

from mxflow.cluster.ambiguity import ambiguity_operators, reindex_set
from mxflow.cluster.intensity import (
    IntensitySet,
    canonical_keys,
    d_spacings,
    merge_observations,
    op_matrix,
    pair_cc,
)
from mxflow.errors import BadInputError
from mxflow.util.files import atomic_write_bytes
from mxflow.util.mtz import keep_resolution, remove_absences

LABEL = "FreeR_flag"
N_FLAGS = 20  # flags 0 … 19; 0 is the test set
#: mixed into the hash; changing it draws a different (equally valid) free set
SEED = 0x6D78666C6F77  # "mxflow"
#: mixed into the hash that spreads the work reflections of a two-valued source over 1 … 19
WORK_SEED = 0x776F726B  # "work"

#: free-flag columns a source MTZ may have, in order of preference (matched case-insensitively):
#: CCP4 freerflag / uniqueify / DIALS / xia2 (FreeR_flag), older CCP4 (FREE), phenix
#: (R-free-flags), autoPROC / BUSTER (FreeRflag)
FLAG_LABELS = ("FreeR_flag", "FreeRflag", "FREE", "R-free-flags")
#: merged intensities (or amplitudes, squared) that decide the setting: (value, sigma, squared)
INTENSITY_LABELS = (
    ("IMEAN", "SIGIMEAN", False),
    ("I", "SIGI", False),
    ("I-obs", "SIGI-obs", False),
    ("F", "SIGF", True),
    ("FP", "SIGFP", True),
    ("F-obs", "SIGF-obs", True),
)
#: cells of source and data (after reindexing) may differ this much: relative edge, degrees
CELL_TOLERANCE = 0.03
ANGLE_TOLERANCE = 3.0
#: common reflections a CC between source and data needs to count
MIN_COMMON = 20
#: the best CC must beat the next operator's by this much to decide the setting
CC_MARGIN = 0.05
MAX_HISTORY = 30  # gemmi reads no history at all from an MTZ with more lines


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uint64 → well-mixed uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def free_flags(hkl: np.ndarray, space_group: gemmi.SpaceGroup | str) -> np.ndarray:
    """FreeR_flag (0–19, 0 = test set) of each Miller index (N, 3) in ``space_group``.

    A pure function of the reflection: equivalents and Friedel mates share a
    flag, and about 1 in 20 reflections has flag 0.
    """
    keys = canonical_keys(np.asarray(hkl, dtype=np.int64), space_group).astype(np.uint64)
    return (_mix64(keys ^ np.uint64(SEED)) % np.uint64(N_FLAGS)).astype(np.int64)


def _work_flags(hkl: np.ndarray, space_group: gemmi.SpaceGroup | str) -> np.ndarray:
    """A work-set flag (1–19) for each Miller index, by hash: for sources with only two values."""
    keys = canonical_keys(np.asarray(hkl, dtype=np.int64), space_group).astype(np.uint64)
    return 1 + (_mix64(keys ^ np.uint64(WORK_SEED)) % np.uint64(N_FLAGS - 1)).astype(np.int64)


def _append_history(mtz: gemmi.Mtz, lines: list[str]) -> None:
    """Add ``lines`` to the MTZ history, wrapped to MTZ's 80-character records; at most
    :data:`MAX_HISTORY` lines in all (the oldest go first, mxflow's own are kept)."""
    new = [w for line in lines for w in textwrap.wrap(line, 80, subsequent_indent="  ")]
    old = list(mtz.history)
    keep = max(0, MAX_HISTORY - len(new))
    mtz.history = [*old[:keep], *new][-MAX_HISTORY:]


def _set_flag_column(mtz: gemmi.Mtz, flags: np.ndarray) -> None:
    if mtz.column_with_label(LABEL) is None:
        mtz.add_column(LABEL, "I", dataset_id=mtz.datasets[-1].id if mtz.datasets else -1)
    data = np.array(mtz, copy=True)
    data[:, mtz.column_labels().index(LABEL)] = flags
    mtz.set_data(data)


def add_free_flags(mtz: gemmi.Mtz) -> None:
    """Give a merged MTZ its ``FreeR_flag`` column (replaced if present), in place."""
    _set_flag_column(mtz, free_flags(np.asarray(mtz.make_miller_array()), mtz.spacegroup))
    _append_history(mtz, [f"mxflow: {LABEL} 0-{N_FLAGS - 1} (0 = test set) by hash"])


# --------------------------------------------------------------------------
# flags from another MTZ


@dataclass(frozen=True)
class FreeFlagSource:
    """The free set of an existing MTZ, in the CCP4 convention (0 = test set).

    ``hkl`` (N, 3) and ``flags`` (N,) as in the file (rows without a flag
    left out); ``space_group`` its xHM name, ``cell`` (Å, degrees);
    ``intensity`` / ``sigma`` (N,) the merged intensities (amplitudes
    squared) when the file has them, NaN where missing, named by
    ``intensity_label``; ``conversion`` says what was done to the flag
    values ("" when they were CCP4's already).
    """

    path: str
    label: str
    hkl: np.ndarray
    flags: np.ndarray
    space_group: str
    cell: tuple[float, ...]
    intensity: np.ndarray | None = None
    sigma: np.ndarray | None = None
    intensity_label: str = ""
    conversion: str = ""

    @property
    def n_free(self) -> int:
        return int((self.flags == 0).sum())

    def intensity_set(self, space_group: gemmi.SpaceGroup | str) -> IntensitySet | None:
        """The source's intensities on canonical keys of ``space_group`` (None without)."""
        if self.intensity is None or self.sigma is None:
            return None
        ok = np.isfinite(self.intensity) & np.isfinite(self.sigma)
        if not ok.any():
            return None
        hkl = _expand(self.hkl[ok], self.space_group, space_group)
        n = len(hkl) // int(ok.sum())
        i, s = np.tile(self.intensity[ok], n), np.tile(self.sigma[ok], n)
        return merge_observations("free-flag source", hkl, i, np.where(s > 0, s, 1.0), space_group)


def _find_flag_column(mtz: gemmi.Mtz) -> str | None:
    labels = mtz.column_labels()
    for want in FLAG_LABELS:
        for lab in labels:
            if lab.lower() == want.lower():
                return lab
    return None


def _intensities(mtz: gemmi.Mtz) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(I, σ(I), label) of a merged MTZ: the first of :data:`INTENSITY_LABELS` it has."""
    labels = mtz.column_labels()
    for i_lab, s_lab, square in INTENSITY_LABELS:
        if i_lab in labels and s_lab in labels:
            v = np.asarray(mtz.column_with_label(i_lab), dtype=float)
            s = np.asarray(mtz.column_with_label(s_lab), dtype=float)
            if square:
                return v * v, 2 * np.abs(v) * s, f"{i_lab}^2"
            return v, s, i_lab
    return None


def _ccp4_flags(
    values: np.ndarray, hkl: np.ndarray, space_group: str, label: str
) -> tuple[np.ndarray, str]:
    """Flag values of a source column as CCP4 flags (0 = test set), and what was done.

    Three or more values: CCP4's convention (0 = test set), kept.  Two
    values (phenix's R-free-flags 0/1 with 1 = test set, CNS/SHELX −1/1):
    the rarer one is the test set, as cctbx reads them; it becomes 0 and the
    work reflections get 1–19 by hash.  Raises ValueError when no test set
    can be told.
    """
    uniq, counts = np.unique(values, return_counts=True)
    if len(uniq) == 1:
        raise ValueError(f"column {label} has one value only ({uniq[0]}): no test set")
    if len(uniq) >= 3:
        if 0 not in uniq:
            raise ValueError(
                f"column {label} has values {uniq.min()}-{uniq.max()} without 0, the CCP4 test set"
            )
        return values, ""
    test = uniq[int(np.argmin(counts))]
    frac = counts.min() / counts.sum()
    if not 0.005 <= frac <= 0.35:
        raise ValueError(
            f"column {label} has values {uniq[0]}/{uniq[1]} with {frac:.1%} of the rarer: "
            "no test set can be told"
        )
    out = np.where(values == test, 0, _work_flags(hkl, space_group))
    if test == 0 and uniq[1] == 1:
        return out, f"{label} 0/1 with 0 = test set ({frac:.1%}); work set spread over 1-19"
    return out, (
        f"{label} {uniq[0]}/{uniq[1]} with {test} = test set ({frac:.1%}, "
        f"phenix/CNS style) converted to CCP4 0-19, test set 0"
    )


def read_free_flag_source(path: str | Path) -> FreeFlagSource:
    """The free set of the MTZ ``path`` (see :class:`FreeFlagSource`).

    Raises BadInputError naming the file and the problem: no such file, not
    an MTZ, no flag column (one of :data:`FLAG_LABELS`), or flags from
    which no test set can be told.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInputError(path, "free-flag MTZ not found")
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except (RuntimeError, ValueError, OSError) as exc:
        raise BadInputError(path, f"free-flag file is not a readable MTZ ({exc})") from None
    label = _find_flag_column(mtz)
    if label is None:
        raise BadInputError(
            path,
            f"no free-flag column ({', '.join(FLAG_LABELS)}) among {mtz.column_labels()}",
        )
    if mtz.spacegroup is None:
        raise BadInputError(path, "free-flag MTZ has no space group")
    hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64)
    raw = np.asarray(mtz.column_with_label(label), dtype=float)
    ok = np.isfinite(raw)
    if not ok.any():
        raise BadInputError(path, f"column {label} has no values")
    if np.any(raw[ok] != np.round(raw[ok])):
        raise BadInputError(path, f"column {label} holds non-integer values: not free flags")
    sg = mtz.spacegroup.xhm()
    try:
        flags, conversion = _ccp4_flags(raw[ok].astype(np.int64), hkl[ok], sg, label)
    except ValueError as exc:
        raise BadInputError(path, str(exc)) from None
    measured = _intensities(mtz)
    i = s = None
    i_label = ""
    if measured is not None:
        i, s, i_label = measured[0][ok], measured[1][ok], measured[2]
    return FreeFlagSource(
        path=str(path),
        label=label,
        hkl=hkl[ok],
        flags=flags,
        space_group=sg,
        cell=tuple(mtz.get_cell().parameters),
        intensity=i,
        sigma=s,
        intensity_label=i_label,
        conversion=conversion,
    )


@functools.lru_cache(maxsize=8)
def _cached_source(path: str, mtime_ns: int, size: int) -> FreeFlagSource:
    return read_free_flag_source(path)


def load_free_flag_source(path: str | Path) -> FreeFlagSource:
    """:func:`read_free_flag_source`, read once per process (again when the file changes)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise BadInputError(path, "free-flag MTZ not found") from None
    return _cached_source(str(p.absolute()), st.st_mtime_ns, st.st_size)


def free_flags_arg(text: str) -> str:
    """argparse ``type=`` for ``--free-flags MTZ``: the file checked now, its absolute path."""
    try:
        load_free_flag_source(text)
    except BadInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return str(Path(text).absolute())


def _rotations(space_group: gemmi.SpaceGroup | str) -> list[np.ndarray]:
    sg = gemmi.SpaceGroup(space_group) if isinstance(space_group, str) else space_group
    return [op_matrix(op) for op in sg.operations().sym_ops]


def _expand(
    hkl: np.ndarray, own: gemmi.SpaceGroup | str, target: gemmi.SpaceGroup | str
) -> np.ndarray:
    """``hkl`` and its equivalents in its own group ``own`` (stacked, len(hkl) rows each)
    when that point group differs from ``target``'s; else ``hkl`` itself."""
    mine = _rotations(own)
    if {m.tobytes() for m in mine} == {m.tobytes() for m in _rotations(target)}:
        return hkl
    return np.concatenate([hkl @ m.T for m in mine])


def _reindexed_cell(cell: gemmi.UnitCell, op: gemmi.Op) -> tuple[float, ...]:
    """The cell (Å, degrees) of data whose Miller indices are reindexed by ``op``."""
    m = op_matrix(op).astype(float)
    orth = np.array(cell.orth.mat.tolist())
    g = m @ (orth.T @ orth) @ m.T
    a, b, c = np.sqrt(np.diag(g))
    ang = [
        math.degrees(math.acos(np.clip(g[i, j] / (x * y), -1, 1)))
        for i, j, x, y in ((1, 2, b, c), (0, 2, a, c), (0, 1, a, b))
    ]
    return (float(a), float(b), float(c), *ang)


def _cell_difference(x: tuple[float, ...], y: tuple[float, ...]) -> tuple[float, float]:
    """(largest relative edge difference, largest angle difference in degrees)."""
    edges = max(abs(p - q) / max(p, q) for p, q in zip(x[:3], y[:3], strict=True))
    angles = max(abs(p - q) for p, q in zip(x[3:], y[3:], strict=True))
    return edges, angles


def _cell_text(c: tuple[float, ...]) -> str:
    return " ".join(f"{v:.2f}" for v in c)


@dataclass
class FreeFlagReport:
    """What :func:`apply_free_flag_source` did to one merged MTZ.

    ``operator``: the reindexing (on the data's Miller indices) into the
    source's setting; ``chosen_by``: "unique" (the lattice has one
    indexing), "CC" (of intensities), "cell", or "unchecked" (identity,
    nothing could tell); ``cc``: CC to the source per operator tried.
    """

    source: str
    operator: str
    chosen_by: str
    n_copied: int
    n_extended: int
    n_beyond: int  # of n_extended: beyond the source's resolution
    n_conflicts: int = 0  # source reflections equivalent in the data's group with two flags
    cc: dict[str, float] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)


def _choose_operator(
    mtz: gemmi.Mtz, source: FreeFlagSource, ops: list[gemmi.Op], sg: gemmi.SpaceGroup
) -> tuple[int, str, dict[str, float], str]:
    """(index into ``ops``, how chosen, CC per operator, a line of why)."""
    if len(ops) == 1:
        return 0, "unique", {}, "unique indexing"
    cc: dict[str, float] = {}
    ref = source.intensity_set(sg)
    measured = _intensities(mtz)
    if ref is not None and measured is not None:
        hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64)
        i, s, _ = measured
        ok = np.isfinite(i) & np.isfinite(s)
        data = merge_observations("data", hkl[ok], i[ok], np.where(s[ok] > 0, s[ok], 1.0), sg)
        for o in ops:
            value, n = pair_cc(reindex_set(data, o, sg), ref)
            if n >= MIN_COMMON and math.isfinite(value):
                cc[o.triplet()] = value
        if cc:
            ranked = sorted(cc.items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{t} {v:.2f}" for t, v in ranked)
            if len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= CC_MARGIN:
                best = [o.triplet() for o in ops].index(ranked[0][0])
                return best, "CC", cc, f"by CC of {source.intensity_label} ({text})"
            why_not_cc = f"CC undecided ({text}); "
        else:
            why_not_cc = f"fewer than {MIN_COMMON} common reflections for a CC; "
    else:
        why_not_cc = "no intensities to compare; "
    dist = []
    for o in ops:
        edges, angles = _cell_difference(_reindexed_cell(mtz.cell, o), source.cell)
        dist.append(max(edges, math.radians(angles)))
    order = np.argsort(dist, kind="stable")
    best, second = dist[order[0]], dist[order[1]]
    if best <= 0.5 * second and second - best >= 0.002:
        text = f"cell differs by {best:.1%} (next {second:.1%})"
        return int(order[0]), "cell", cc, f"by the cell ({why_not_cc}{text})"
    return 0, "unchecked", cc, f"NOT CHECKED ({why_not_cc}cells alike in every setting)"


def apply_free_flag_source(mtz: gemmi.Mtz, source: FreeFlagSource) -> FreeFlagReport:
    """Give the merged ``mtz`` the free set of ``source`` (its FreeR_flag column, in place).

    The data are reindexed into the source's setting by one of the lattice's
    indexing-ambiguity operators (:func:`~mxflow.cluster.ambiguity.ambiguity_operators`),
    chosen by the CC of intensities when both files have them, else by the
    cell where that tells the settings apart, else the identity (recorded as
    not checked).  Every reflection the source has (matched on canonical
    keys in the data's space group; equivalents in the source's group
    included) takes its flag; the others take the hash flag of their index
    in the source's setting (:func:`free_flags`: the set is extended, not
    redrawn; 5 % of the extension is test set).  A source whose cell differs
    from the data's (after the reindexing) by more than :data:`CELL_TOLERANCE`
    / :data:`ANGLE_TOLERANCE` raises BadInputError.  The history records the
    file, the operator and how many flags were copied and extended.
    """
    sg = mtz.spacegroup
    ops = ambiguity_operators(mtz.cell.parameters, sg)
    k, chosen_by, cc, why = _choose_operator(mtz, source, ops, sg)
    op = ops[k]
    cell = _reindexed_cell(mtz.cell, op)
    edges, angles = _cell_difference(cell, source.cell)
    if edges > CELL_TOLERANCE or angles > ANGLE_TOLERANCE:
        raise BadInputError(
            source.path,
            f"cell {_cell_text(source.cell)} does not match the data's {_cell_text(cell)} "
            f"(reindexed by {op.triplet()}; {edges:.1%} / {angles:.1f} deg apart, more than "
            f"{CELL_TOLERANCE:.0%} / {ANGLE_TOLERANCE:g} deg): not a free set for these data",
        )
    # the source's flag per canonical key of the data's group; equivalent reflections of a
    # lower-symmetry source with different flags: the test set wins (no leak into the work set)
    hkl_s = _expand(source.hkl, source.space_group, sg)
    flags_s = np.tile(source.flags, len(hkl_s) // len(source.hkl))
    keys_s, inv = np.unique(canonical_keys(hkl_s, sg), return_inverse=True)
    lo = np.full(len(keys_s), np.iinfo(np.int64).max)
    hi = np.full(len(keys_s), np.iinfo(np.int64).min)
    np.minimum.at(lo, inv, flags_s)
    np.maximum.at(hi, inv, flags_s)
    n_conflicts = int((lo != hi).sum())

    hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64) @ op_matrix(op).T
    keys = canonical_keys(hkl, sg)
    pos = np.clip(np.searchsorted(keys_s, keys), 0, max(len(keys_s) - 1, 0))
    found = keys_s[pos] == keys if len(keys_s) else np.zeros(len(keys), dtype=bool)
    flags = np.where(found, lo[pos], free_flags(hkl, sg))
    _set_flag_column(mtz, flags)

    n_copied = int(found.sum())
    n_extended = len(flags) - n_copied
    d_min_source = float(d_spacings(source.hkl, gemmi.UnitCell(*source.cell)).min())
    n_beyond = int((~found & (np.asarray(mtz.make_d_array()) < d_min_source * (1 - 1e-6))).sum())
    lines = [f"mxflow: {LABEL} from {source.path} (column {source.label})"]
    if source.conversion:
        lines.append(f"mxflow: {source.conversion}")
    lines.append(f"mxflow: setting {op.triplet()} {why}")
    lines.append(
        f"mxflow: {n_copied} flags copied, {n_extended} extended by hash "
        f"({n_beyond} beyond the source's resolution; 5 % of them test set)"
    )
    if n_conflicts:
        lines.append(
            f"mxflow: {n_conflicts} reflections equivalent here had two flags in the source: "
            "test set kept"
        )
    _append_history(mtz, lines)
    return FreeFlagReport(
        source=source.path,
        operator=op.triplet(),
        chosen_by=chosen_by,
        n_copied=n_copied,
        n_extended=n_extended,
        n_beyond=n_beyond,
        n_conflicts=n_conflicts,
        cc=cc,
        history=lines,
    )


def write_merged_mtz(
    src: str | Path,
    dst: str | Path,
    note: str = "",
    d_min: float | None = None,
    free_flags: str | Path | None = None,
    history_lines: list[str] | None = None,
) -> FreeFlagReport | None:
    """The merged MTZ a user gets: ``src`` (a DIALS merged MTZ) written to ``dst`` with
    the reflections of d ≥ ``d_min`` Å (when given), no systematic absences and the
    FreeR_flag column; the history says what mxflow did (``note`` first, then the
    lines of ``history``, e.g. the heavy atom of an anomalous merge).

    The flags are those of the MTZ ``free_flags`` (read once per process,
    applied by :func:`apply_free_flag_source`; its report is returned) when
    given, else the hash flags (:func:`add_free_flags`; None returned).  A
    free-flag file that cannot be used raises BadInputError and writes nothing.

    Used for every merged.mtz: per dataset (mxflow process) and per cluster (merging).
    ``dst`` is written then renamed.
    """
    source = load_free_flag_source(free_flags) if free_flags else None
    mtz = gemmi.read_mtz_file(str(src))
    history = [f"mxflow: {note}"] if note else []
    history += [f"mxflow: {line}" for line in history_lines or []]
    if d_min:
        keep_resolution(mtz, d_min=d_min)
        history.append(f"mxflow: resolution cut at {d_min:.3f} A")
    history.append(f"mxflow: {remove_absences(mtz)} systematic absences removed")
    _append_history(mtz, history)
    report = None
    if source is None:
        add_free_flags(mtz)
    else:
        report = apply_free_flag_source(mtz, source)
    atomic_write_bytes(dst, mtz.write_to_bytes())
    return report
