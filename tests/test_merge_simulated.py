"""merge_sample on simulated small wedges: populations, indexing ambiguity, reference, no-common wedge.

One set of wedges is simulated and processed with DIALS once per test
session and shared by every test here: 8 crystals in P4 (a = b, so each
crystal may be indexed in either of two settings, h,k,l or k,h,−l), two
non-isomorphous populations A and B (B has a and b 2 % longer and 30 % of
the atoms moved), 8 × 1° each on a small detector, data to 2.5 Å.  The
simulator picks a random indexing setting per crystal; DIALS indexes each
wedge in whichever setting it finds, so the processed wedges disagree.

``mxflow process`` indexes these wedges without a known cell or space group.
The wedge sharing the fewest reflections with the others becomes the
"no common reflections" wedge: a copy of it keeping only its reflections
that no other wedge measured (in either setting) is merged instead of it.

Developers: MXFLOW_TEST_MERGE_SIM=DIR keeps the simulated and processed set
in DIR and reuses it on the next run (processing is most of the time).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import gemmi
import msgpack
import numpy as np
import pytest

from mxflow import cli
from mxflow.cluster import ambiguity
from mxflow.cluster.intensity import (
    IntensitySet,
    canonical_keys,
    merge_observations,
    op_matrix,
    pair_cc,
)
from mxflow.engine.expt import read_experiments
from mxflow.engine.refl import COLUMN_TYPES, read_reflections
from mxflow.merge import merge_sample
from mxflow.merge.observations import read_observations, read_reference
from mxflow.merge.outputs import read_cc_table, read_dendrogram, read_summary
from mxflow.model import MergeOptions, ProcessingOptions, Thresholds
from mxflow.process.cli import dataset_name, run_process
from mxflow.simulate import SimulationConfig, simulate
from mxflow.simulate.score import score

pytestmark = [pytest.mark.slow, pytest.mark.dials]

SG = "P 4"
CELL = (45.0, 45.0, 60.0, 90.0, 90.0, 90.0)
D_MIN = 2.5  # Å: simulated data end here; the merges start here
SIM = dict(
    n_crystals=8,
    frames=8,
    osc_width=1.0,
    detector_size=(487, 619),
    distance=100.0,
    d_min=D_MIN,
    space_group=SG,
    unit_cell=CELL,
    n_populations=2,
    population_cell_change=0.02,
    random_indexing=True,
    seed=3,
)
#: thresholds for 8° wedges: one population (3-4 wedges) reaches ~60 % completeness
THRESHOLDS = Thresholds(min_completeness=50, min_multiplicity=1.4, max_clusters=3)


@dataclass
class Wedges:
    """The processed simulated set."""

    root: Path
    truth_dir: Path
    proc: Path
    population: dict[str, str]  # processed dataset name → simulated population
    ok: list[str]  # datasets processed successfully
    lone_source: str  # the wedge the no-common copy was made from
    lone_dir: Path  # nocommon/integrated.expt + integrated.refl


# ----------------------------------------------------------------- helpers
def ops_p4() -> list[gemmi.Op]:
    """Identity and the P4 lattice's alternative indexing, as mxflow finds them."""
    ops = ambiguity.ambiguity_operators(CELL, SG)
    assert len(ops) == 2
    return ops


def write_subset_refl(src: Path, dst: Path, keep: np.ndarray) -> None:
    """Copy a DIALS msgpack reflection table keeping the rows where ``keep`` is True."""
    doc = msgpack.unpackb(src.read_bytes(), raw=False, strict_map_key=False)
    body = doc[2]
    for name, (type_name, (rows, blob)) in body["data"].items():
        dtype, shape = COLUMN_TYPES[type_name]  # KeyError: a column type we cannot slice
        arr = np.frombuffer(blob, dtype=dtype).reshape((rows, *shape))
        body["data"][name] = [type_name, [int(keep.sum()), arr[keep].tobytes()]]
    body["nrows"] = int(keep.sum())
    dst.write_bytes(msgpack.packb(doc, use_bin_type=True))


def integrated_keys(refl: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(integrated mask, d in Å, canonical P4 keys under each ambiguity operator) of a table."""
    t = read_reflections(refl, columns=["miller_index", "d", "flags"])
    hkl = t.columns["miller_index"].astype(np.int64)
    ok = t.has_flag("integrated") & (hkl != 0).any(axis=1)
    keys = np.stack([canonical_keys(hkl @ op_matrix(o).T, SG) for o in ops_p4()])
    return ok, t.columns["d"], keys


def make_lone_wedge(proc: Path, names: list[str], out: Path) -> str:
    """Write ``out``/integrated.{expt,refl}: the wedge with most reflections (d ≥ D_MIN) seen by
    no other wedge in any setting, keeping only those; returns the source wedge's name."""
    info = {n: integrated_keys(proc / n / "integrated.refl") for n in names}
    best = None
    for x in names:
        others = np.concatenate([k[:, ok].ravel() for n, (ok, _, k) in info.items() if n != x])
        ok, d, k = info[x]
        lone = ok & ~np.isin(k, others).any(axis=0)
        n_in = int((lone & (d >= D_MIN)).sum())
        if best is None or n_in > best[1]:
            best = (x, n_in, lone)
    x, n_in, lone = best
    assert n_in >= 20, f"no wedge has enough reflections of its own ({n_in})"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(proc / x / "integrated.expt", out / "integrated.expt")
    write_subset_refl(proc / x / "integrated.refl", out / "integrated.refl", lone)
    return x


def pair_inputs(proc: Path, names: list[str]) -> list[Path]:
    """Integrated .expt/.refl pairs of processed datasets (names come from their folders)."""
    out = []
    for n in names:
        out += [proc / n / "integrated.expt", proc / n / "integrated.refl"]
    return out


def truth_set(w: Wedges, pop: str) -> IntensitySet:
    return read_reference(w.truth_dir / f"truth_{pop}.mtz")[0]


def reindexed(s: IntensitySet, op: gemmi.Op) -> IntensitySet:
    return ambiguity.reindex_set(s, op, SG)


def per_dataset_truth_cc(w: Wedges, mtz: Path, expt: Path) -> dict[str, list[float]]:
    """CC to its population's truth of each experiment of a multi-experiment MTZ, per operator."""
    obs = read_observations(mtz, expt)
    exps = read_experiments(expt)
    out = {}
    for k, e in enumerate(exps):
        name = dataset_name(e.template)
        sel = obs.dataset == k
        mine = merge_observations(name, obs.hkl[sel], obs.i[sel], obs.sigma[sel], obs.space_group)
        truth = truth_set(w, w.population[name])
        out[f"{k}:{name}"] = [pair_cc(reindexed(mine, o), truth)[0] for o in ops_p4()]
    return out


def free_flag_map(mtz_path: Path) -> dict[tuple[int, int, int], int]:
    """{(h, k, l): FreeR_flag} of a merged MTZ."""
    mtz = gemmi.read_mtz_file(str(mtz_path))
    hkl = np.asarray(mtz.make_miller_array())
    flags = np.asarray(mtz.column_with_label("FreeR_flag"), dtype=int)
    return {tuple(int(x) for x in h): int(f) for h, f in zip(hkl, flags, strict=True)}


def purity(members: list[str], population: dict[str, str]) -> tuple[str, float]:
    pops = [population[m] for m in members]
    top = max(set(pops), key=pops.count)
    return top, pops.count(top) / len(pops)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def wedges(tmp_path_factory) -> Wedges:
    if shutil.which("dials.index") is None:
        pytest.skip("DIALS not on PATH")
    reuse = os.environ.get("MXFLOW_TEST_MERGE_SIM")  # developers: keep the set between runs
    root = Path(reuse) if reuse else tmp_path_factory.mktemp("merge_simulated")
    sim = simulate(root / "images", SimulationConfig(**SIM))
    if reuse and (root / "proc" / "summary.json").exists():
        summary = json.loads((root / "proc" / "summary.json").read_text())
    else:
        summary = run_process(
            [str(root / "images")],
            root / "proc",
            ProcessingOptions(nproc=2),
            jobs=2,
            progress=False,
        )
    # simulator crystal → processed dataset: `mxflow process` names a sweep after its template
    population = {dataset_name(c["template"]): c["population"] for c in sim.crystals}
    assert sorted(d["name"] for d in summary["datasets"]) == sorted(population)
    ok = [d["name"] for d in summary["datasets"] if d["status"] == "ok"]
    for pop in ("A", "B"):
        assert sum(population[n] == pop for n in ok) >= 3, summary["datasets"]
    lone_dir = root / "nocommon"
    source = make_lone_wedge(root / "proc", ok, lone_dir)
    population["nocommon"] = population[source]
    return Wedges(root, sim.truth_dir, root / "proc", population, ok, source, lone_dir)


@pytest.fixture(scope="session")
def merged(wedges: Wedges):
    """One merge of every good wedge but the lone one's source, plus the no-common copy."""
    names = [n for n in wedges.ok if n != wedges.lone_source]
    inputs = [*pair_inputs(wedges.proc, names), wedges.lone_dir]
    wd = wedges.root / "merge"
    shutil.rmtree(wd, ignore_errors=True)
    opts = MergeOptions(sample="sim", d_min=D_MIN, nproc=2, thresholds=THRESHOLDS)
    summary = merge_sample(inputs, wd, opts)
    return wd, summary, names


# ------------------------------------------------------------------- tests
def test_two_populations_come_out_in_separate_pure_clusters(wedges, merged):
    wd, s, names = merged
    dendro = read_dendrogram(wd / "merge_cc_2.5S_sim" / "dendrogram_cc.json")
    by_id = {n.id: n for n in dendro.nodes}
    root = max(by_id.values(), key=lambda n: len(n.members))
    assert sorted(root.members) == sorted(names)  # every clustered wedge; nocommon is not
    halves = []
    for child in root.children:
        members = by_id[child].members if child in by_id else [dendro.leaves[child]]
        halves.append(purity(members, wedges.population))
    # the first split of the CC dendrogram is the population split, each side ≥ 95 % pure
    assert {pop for pop, _ in halves} == {"A", "B"}, halves
    assert all(frac >= 0.95 for _, frac in halves), halves

    good = [c for c in s.clusters if c.ok]
    assert len(good) == len(s.clusters), s.clusters
    # every cluster carries the same FreeR_flag for every reflection they have in common
    flags = [free_flag_map(wd / c.merged_mtz) for c in good]
    assert len(flags) >= 2
    for a, b in itertools.combinations(flags, 2):
        common = a.keys() & b.keys()
        assert len(common) > 100 and all(a[h] == b[h] for h in common)
    for pop in ("A", "B"):
        pure = [
            c
            for c in good
            if purity(c.members, wedges.population)[0] == pop
            and purity(c.members, wedges.population)[1] >= 0.95
        ]
        assert pure, f"no merged cluster of population {pop}: {s.clusters}"
        c = max(pure, key=lambda c: len(c.members))
        n_pop = sum(wedges.population[n] == pop for n in names)
        assert len(c.members) >= n_pop - 1, (pop, c.members)
        res = score(wd / c.merged_mtz, wedges.truth_dir)
        assert res["population"] == pop
        assert res["cc_overall"] >= 0.9, res
        # and it is clearly better than the other population's truth
        other = "B" if pop == "A" else "A"
        assert res["populations"][other]["cc_overall"] < res["cc_overall"] - 0.1, res


def test_ambiguous_p4_wedges_come_out_consistently_indexed(wedges, merged):
    wd, s, names = merged
    # as processed one by one, the wedges are indexed in different settings (else no test)
    alone = {}
    for n in names:
        cc = per_dataset_truth_cc(
            wedges, wedges.proc / n / "scaled.mtz", wedges.proc / n / "scaled.expt"
        )
        alone[n] = int(np.argmax(next(iter(cc.values()))))
    assert len(set(alone.values())) == 2, alone
    # after mxflow's symmetry step every wedge is in one setting, decided by a clear margin
    prep = wd / "merge_prep_2.5S_sim"
    cc = per_dataset_truth_cc(wedges, prep / "unscaled.mtz", prep / "symmetrized.expt")
    assert len(cc) == len(names) + 1  # nocommon is still there before the CC stage
    best = {k: int(np.argmax(v)) for k, v in cc.items()}
    assert len(set(best.values())) == 1, cc
    for k, v in cc.items():
        if not k.endswith(f":{wedges.lone_source}"):  # the no-common copy has few reflections
            assert max(v) - min(v) > 0.2, (k, v)
    assert s.ambiguity.operators == [o.triplet() for o in ops_p4()]
    assert s.ambiguity.selective_breeding_agrees is True
    # the merged data of each cluster are one consistent set: CC to the truth ≥ 0.9
    # (score tries every re-indexing of the whole merged file)
    for c in s.clusters:
        if purity(c.members, wedges.population)[1] == 1.0:
            assert score(wd / c.merged_mtz, wedges.truth_dir)["cc_overall"] >= 0.9, c


def test_wedge_without_common_reflections_is_recorded_not_fatal(wedges, merged):
    wd, s, _ = merged
    rows = [r for r in s.rejected if r.name == "nocommon"]
    assert len(rows) == 1 and rows[0].stage == "cc", s.rejected
    assert rows[0].reason.startswith("no_common_refls"), rows
    assert all("nocommon" not in c.members for c in s.clusters)
    table = read_cc_table(wd / "merge_cc_2.5S_sim" / "cc_table.json")
    pairs = [r for r in table if "nocommon" in (r.name_i, r.name_j)]
    assert pairs and all(r.n_common < 3 for r in pairs)
    assert s.clusters and all(c.ok for c in s.clusters)


def test_reference_mtz_fixes_the_setting(wedges):
    """Merged against the truth of population A in either setting, the result follows it."""
    names = [n for n in wedges.ok if wedges.population[n] == "A"]
    truth_mtz = wedges.truth_dir / "truth_A.mtz"
    twin = ops_p4()[1]
    # the same truth in the other setting, written as a second reference
    mtz = gemmi.read_mtz_file(str(truth_mtz))
    data = np.array(mtz, copy=True)
    data[:, :3] = data[:, :3].astype(np.int64) @ op_matrix(twin).T
    mtz.set_data(data)
    mtz.ensure_asu()
    twin_mtz = wedges.root / "truth_A_twin.mtz"
    mtz.write_to_file(str(twin_mtz))

    chosen_ops = []
    for k, ref in enumerate((truth_mtz, twin_mtz)):
        wd = wedges.root / f"merge_ref{k}"
        shutil.rmtree(wd, ignore_errors=True)
        inputs = pair_inputs(wedges.proc, names)
        if k == 0:  # the library call
            opts = MergeOptions(
                sample="ref",
                d_min=D_MIN,
                nproc=2,
                reference=str(ref),
                thresholds=Thresholds(min_completeness=0, min_multiplicity=0, max_clusters=1),
                reject_frames=False,
                reject_datasets=False,
            )
            s = merge_sample(inputs, wd, opts)
        else:  # the command line: mxflow merge ... --reference MTZ
            argv = ["merge", *map(str, inputs), "--workdir", str(wd), "--sample", "ref"]
            argv += ["--d-min", str(D_MIN), "--reference", str(ref), "--nproc", "2"]
            argv += ["--min-completeness", "0", "--min-multiplicity", "0", "--max-clusters", "1"]
            argv += ["--no-frame-rejection", "--no-dataset-rejection"]
            assert cli.main(argv) == 0
            s = read_summary(wd / "merge_summary_ref.json")
        assert len(s.clusters) == 1 and s.clusters[0].ok, s
        chosen_ops.append(s.ambiguity.reference_op)
        merged = read_reference(wd / s.clusters[0].merged_mtz)[0]
        reference = read_reference(ref)[0]
        cc_id, n = pair_cc(merged, reference)  # identity: no re-indexing allowed
        cc_twin, _ = pair_cc(reindexed(merged, twin), reference)
        assert n > 500 and cc_id >= 0.9, (ref.name, cc_id, cc_twin)
        assert cc_twin < cc_id - 0.3
    # one of the two references needed the whole set re-indexed: that path ran too
    assert sorted(chosen_ops) == sorted(o.triplet() for o in ops_p4()), chosen_ops


def test_free_flags_from_a_file_in_the_other_setting_are_honoured(wedges, merged, tmp_path):
    """--free-flags: a merged MTZ in the other indexing setting of the P4 lattice, with a
    free set of its own; every merged MTZ of a rerun takes its flags through the operator."""
    wd, s, _ = merged
    c = next(c for c in s.clusters if c.ok)
    twin = ops_p4()[1]
    src = gemmi.read_mtz_file(str(wd / c.merged_mtz))
    data = np.array(src, copy=True)
    data[:, :3] = data[:, :3].astype(np.int64) @ op_matrix(twin).T
    rng = np.random.default_rng(7)
    flag_col = src.column_labels().index("FreeR_flag")
    data[:, flag_col] = rng.integers(0, 20, len(data))  # a free set the hash would not give
    src.set_data(data)
    src.ensure_asu()
    flags_mtz = tmp_path / "flags_other_setting.mtz"
    src.write_to_file(str(flags_mtz))
    source = free_flag_map(flags_mtz)

    # the same merge again (DIALS steps reused), with the flags from the file
    rerun = tmp_path / "merge"
    shutil.copytree(wd, rerun)
    names = [n for n in wedges.ok if n != wedges.lone_source]
    inputs = [*pair_inputs(wedges.proc, names), wedges.lone_dir]
    opts = MergeOptions(
        sample="sim", d_min=D_MIN, nproc=2, thresholds=THRESHOLDS, free_flags=str(flags_mtz)
    )
    s2 = merge_sample(inputs, rerun, opts)
    assert [x.id for x in s2.clusters if x.ok] == [x.id for x in s.clusters if x.ok]
    sg = gemmi.SpaceGroup(SG)
    for x in s2.clusters:
        mtz = gemmi.read_mtz_file(str(rerun / x.merged_mtz))
        hkl = np.asarray(mtz.make_miller_array()).astype(np.int64)
        flags = np.asarray(mtz.column_with_label("FreeR_flag"), dtype=int)
        in_src = canonical_keys(hkl @ op_matrix(twin).T, sg)
        src_keys = {
            int(k): v
            for k, v in zip(
                canonical_keys(np.array(list(source)), sg), source.values(), strict=True
            )
        }
        same = [
            src_keys[int(k)] == f for k, f in zip(in_src, flags, strict=True) if int(k) in src_keys
        ]
        assert len(same) > 500 and all(same), (x.id, sum(same), len(same))
        # without the operator most would disagree: the test can fail
        direct = canonical_keys(hkl, sg)
        naive = [
            src_keys[int(k)] == f for k, f in zip(direct, flags, strict=True) if int(k) in src_keys
        ]
        assert sum(naive) < 0.5 * len(naive)
        assert any("flags_other_setting.mtz" in h for h in mtz.history)
