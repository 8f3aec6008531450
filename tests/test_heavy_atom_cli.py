"""--heavy-atom / --sites / --min-anom-* on mxflow merge, process and run, the sheet's
heavy_atom and sites reaching the merge options, and each dataset's anomalous note (#13).

Bad input never stops processing: an unknown element is one warning naming it, and the
data are processed as anomalous without f′/f″."""

from __future__ import annotations

import dataclasses

import pytest

from mxflow.cli import build_parser, main
from mxflow.discover.collection import Collection
from mxflow.merge.cli import anomalous_thresholds
from mxflow.model import Dataset, DatasetResult, MergeSummary, ProcessingOptions
from mxflow.process import cli as process_cli
from mxflow.process.pipeline import anomalous_note, dataset_options, process_dataset
from mxflow.schedule import fake, post
from mxflow.schedule.collection import discover
from mxflow.schedule.options import config_from_args
from mxflow.stats.scatterers import wavelength_a
from run_fixtures import merge_options_of

ZN_PEAK = 1.282  # Å, the THAS1 seed's wavelength


# -------------------------------------------------------------- mxflow merge


def test_merge_heavy_atom_sites_and_thresholds_reach_themerge_options_of(tmp_path, monkeypatch):
    opts = merge_options_of(tmp_path, monkeypatch, "--heavy-atom", "zn", "--sites", "4",
                          "--min-anom-completeness", "80", "--min-anom-multiplicity", "1.5")  # fmt: skip
    assert (opts.heavy_atom, opts.n_sites, opts.anomalous) == ("Zn", 4, True)
    assert opts.thresholds.min_anom_completeness == 80.0
    assert opts.thresholds.min_anom_multiplicity == 1.5
    assert opts.thresholds.min_completeness == 90.0  # the others keep their defaults


def test_merge_without_them_is_not_anomalous(tmp_path, monkeypatch):
    opts = merge_options_of(tmp_path, monkeypatch)
    assert (opts.heavy_atom, opts.n_sites, opts.anomalous) == (None, None, False)
    assert opts.thresholds.min_anom_completeness is None
    assert opts.thresholds.min_anom_multiplicity is None


def test_merge_unknown_heavy_atom_warns_and_goes_on(tmp_path, monkeypatch, capsys):
    opts = merge_options_of(tmp_path, monkeypatch, "--heavy-atom", "Xx")
    err = capsys.readouterr().err
    assert err.count("warning") == 1
    assert "--heavy-atom: heavy atom 'Xx' is not a chemical element symbol" in err
    assert "anomalous processing on, without f′/f″" in err
    assert (opts.heavy_atom, opts.anomalous) == ("Xx", True)


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--sites", "0"], "sites '0' must be a whole number from 1 to 9999"),
        (["--sites", "two"], "sites 'two'"),
        (["--min-anom-completeness", "-5"], "--min-anom-completeness"),
    ],
)
def test_merge_bad_numbers_are_usage_errors(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exc:
        main(["merge", "x.expt", "--workdir", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------- mxflow process


def test_process_heavy_atom_turns_anomalous_on(capsys):
    args = build_parser("process").parse_args(["process", "x", "-o", "out", "--heavy-atom", "SE"])
    opts = process_cli.options_from_args(args)
    assert (opts.heavy_atom, opts.anomalous) == ("Se", True)
    assert capsys.readouterr().err == ""
    args = build_parser("process").parse_args(["process", "x", "-o", "out", "--heavy-atom", "Xx"])
    opts = process_cli.options_from_args(args)
    assert (opts.heavy_atom, opts.anomalous) == ("Xx", True)
    assert "heavy atom 'Xx' is not a chemical element symbol" in capsys.readouterr().err


def test_process_summary_table_shows_the_note():
    entry = {"name": "d", "status": "ok", "anomalous_note": "λ 1.2820 Å … Zn K edge"}
    assert "    anomalous: λ 1.2820 Å … Zn K edge" in process_cli.summary_table([entry])


# -------------------------------------------------------------- per-dataset notes


def _dataset(wavelength: float, **kw) -> Dataset:
    sweep = dataclasses.replace(fake.fake_sweep("/nowhere/x_#####.cbf"), wavelength=wavelength)
    return Dataset("x", sweep, "s", **kw)


def _note(ds: Dataset, options: ProcessingOptions | None = None) -> str | None:
    return anomalous_note(ds, dataset_options(ds, options or ProcessingOptions()))


def test_note_for_data_just_above_the_zn_edge():
    assert _note(_dataset(ZN_PEAK)) == (
        "λ 1.2820 Å (9671 eV) is 12 eV above the Zn K edge: anomalous data? "
        "(use --anomalous or --heavy-atom Zn)"
    )
    assert "processed as anomalous" in _note(_dataset(ZN_PEAK, anomalous=True))
    assert _note(_dataset(1.1)) is None  # far from every edge, no heavy atom: nothing


def test_note_with_a_heavy_atom_gives_f_prime_and_sites():
    ds = _dataset(ZN_PEAK, heavy_atom="Zn", n_sites=2)  # the sheet's
    opts = dataset_options(ds, ProcessingOptions())
    assert (opts.heavy_atom, opts.anomalous) == ("Zn", True)
    assert anomalous_note(ds, opts) == (
        "λ 1.2820 Å (9671 eV) is 12 eV above the Zn K edge (9659 eV): f′ −6.3 e, f″ 3.9 e; "
        "2 Zn site(s) expected"
    )
    # the command line wins over the sheet
    assert dataset_options(ds, ProcessingOptions(heavy_atom="Se")).heavy_atom == "Se"


def test_note_for_se_far_from_its_edge():
    note = _note(_dataset(1.5418), ProcessingOptions(heavy_atom="Se"))
    assert "4.6 keV below the Se K edge (12658 eV): little anomalous signal from Se" in note


def test_unknown_heavy_atom_does_not_stop_processing(tmp_path):
    """No images behind the dataset: it fails on its frames, not on the heavy atom."""
    ds = _dataset(ZN_PEAK)
    result = process_dataset(ds, tmp_path / "x", ProcessingOptions(heavy_atom="Xx"))
    assert result.status == "failed" and "internal error" not in result.reason
    assert result.anomalous_note == (
        "heavy atom 'Xx' is not a chemical element symbol (e.g. Zn, Se, Br, Hg): "
        "anomalous processing on, without f′/f″"
    )


def test_note_at_the_edge_window_limits():
    k = 9659.0  # Zn K, xraydb
    assert "Zn K" in _note(_dataset(wavelength_a(k + 45)))
    assert _note(_dataset(wavelength_a(k + 80))) is None


# -------------------------------------------------------------- mxflow run


def _fake_collection(root, **_):
    sweep = dataclasses.replace(fake.fake_sweep("/d/x_#####.cbf"), wavelength=ZN_PEAK)
    coll = Collection(str(root), "fake")
    coll.datasets = [
        Dataset("a1", sweep, "a"),
        Dataset("a2", sweep, "a"),
        Dataset("b1", sweep, "b", heavy_atom="Se", n_sites=8),  # the sheet's
        Dataset("b2", sweep, "b", heavy_atom="Se", n_sites=8),
    ]
    coll.wedges = [Dataset("a1_1-10", sweep, "a", wedge=(1, 10))]
    return coll


def _run_config(tmp_path, *extra):
    argv = ["run", str(tmp_path), "--workdir", str(tmp_path / "out"),
            "--discover-fn", "test_heavy_atom_cli:_fake_collection", *extra]  # fmt: skip
    return config_from_args(build_parser("run").parse_args(argv))


def test_run_sheet_heavy_atom_reaches_themerge_options_of(tmp_path):
    cfg = _run_config(tmp_path)
    assert (cfg.options.heavy_atom, cfg.options.anomalous) == (None, False)
    settings = post.sample_settings(discover(tmp_path, cfg).datasets)
    a = post.merge_options("a", cfg.options, sheet=settings["a"])
    b = post.merge_options("b", cfg.options, sheet=settings["b"])
    assert (a.heavy_atom, a.n_sites, a.anomalous) == (None, None, False)
    assert (b.heavy_atom, b.n_sites, b.anomalous) == ("Se", 8, True)


def test_run_command_line_wins_over_the_sheet(tmp_path):
    cfg = _run_config(tmp_path, "--heavy-atom", "zn", "--sites", "2")
    assert (cfg.options.heavy_atom, cfg.options.anomalous) == ("Zn", True)
    coll = discover(tmp_path, cfg)
    assert {(d.heavy_atom, d.n_sites) for d in [*coll.datasets, *coll.wedges]} == {("Zn", 2)}
    settings = post.sample_settings(coll.datasets)
    for sample in ("a", "b"):
        opts = post.merge_options(sample, cfg.options, sheet=settings[sample])
        assert (opts.heavy_atom, opts.n_sites, opts.anomalous) == ("Zn", 2, True)


def test_run_unknown_heavy_atom_warns_once(tmp_path, capsys):
    cfg = _run_config(tmp_path, "--heavy-atom", "Xx")
    err = capsys.readouterr().err
    assert err.count("heavy atom 'Xx' is not a chemical element symbol") == 1
    assert (cfg.options.heavy_atom, cfg.options.anomalous) == ("Xx", True)


def test_run_anomalous_thresholds_are_parsed(tmp_path):
    argv = ["run", str(tmp_path), "--workdir", "out", "--min-anom-completeness", "85",
            "--min-anom-multiplicity", "2"]  # fmt: skip
    t = anomalous_thresholds(build_parser("run").parse_args(argv))
    assert (t.min_anom_completeness, t.min_anom_multiplicity) == (85.0, 2.0)
    opts = post.merge_options("a", ProcessingOptions(), thresholds=t)
    assert opts.thresholds.min_anom_completeness == 85.0
    assert post.merge_options("a", ProcessingOptions()).thresholds.min_anom_completeness is None


def test_combined_settings_keep_an_agreed_heavy_atom():
    zn = post.SampleSettings(heavy_atom="Zn", n_sites=2)
    assert post.combine_settings([zn, zn, None]).heavy_atom == "Zn"
    mixed = post.combine_settings([zn, post.SampleSettings(heavy_atom="Se", n_sites=2)])
    assert (mixed.heavy_atom, mixed.n_sites) == (None, 2)


def test_run_log_lines_count_the_notes():
    def result(name, note):
        return DatasetResult(name, "/d", anomalous_note=note)

    lines = post.anomalous_lines("thas1", [result("a", "N1"), result("b", "N1"), result("c", None)])
    assert lines == ["mxflow: sample thas1: N1 (2 of 3 dataset(s))"]


def test_merge_samples_logs_the_notes_and_passes_the_heavy_atom(tmp_path):
    """On a hand-made catalog: the run log says what processing noted, once per note,
    before the merge; the sheet's heavy atom and sites and the thresholds reach it."""
    from mxflow.catalog.db import Catalog
    from mxflow.model import Thresholds

    seen, logged = [], []

    def merge(inputs, workdir, options):
        seen.append(options)
        return MergeSummary(options.sample, notes=["fake: nothing merged"])

    note = "λ 1.2820 Å (9671 eV) is 12 eV above the Zn K edge (9659 eV): f′ −6.3 e, f″ 3.9 e"
    with Catalog(tmp_path / "out") as cat:
        for name in ("x1", "x2"):
            key = f"proc/P1/{name}"
            ds = Dataset(name, fake.fake_sweep(f"/data/{name}_#####.cbf"), "thas1")
            cat.add_dataset(key, ds, "sweep", None)
            r = DatasetResult(name, name, "ok", sample="thas1", anomalous_note=note)
            r.integrated_expt, r.integrated_refl = f"{key}/i.expt", f"{key}/i.refl"
            cat.record_result(key, r)
        post.merge_samples(
            tmp_path / "out",
            cat,
            ProcessingOptions(),
            logged.append,
            {"thas1": post.SampleSettings(heavy_atom="Zn", n_sites=4)},
            merge_fn=merge,
            thresholds=Thresholds(min_anom_completeness=80.0),
        )
    assert f"mxflow: sample thas1: {note} (2 of 2 dataset(s))" in logged
    start = next(i for i, m in enumerate(logged) if "merging 2 dataset(s)" in m)
    assert logged.index(f"mxflow: sample thas1: {note} (2 of 2 dataset(s))") < start
    (opts,) = seen
    assert (opts.heavy_atom, opts.n_sites, opts.anomalous) == ("Zn", 4, True)
    assert opts.thresholds.min_anom_completeness == 80.0


def test_run_anomalous_thresholds_reach_the_run_config(tmp_path):
    cfg = _run_config(tmp_path, "--min-anom-completeness", "85", "--min-anom-multiplicity", "2")
    assert (cfg.thresholds.min_anom_completeness, cfg.thresholds.min_anom_multiplicity) == (85, 2)
    assert _run_config(tmp_path).thresholds.min_anom_completeness is None


def _flagged(name: str, anomalous: bool) -> Dataset:
    return Dataset(name, fake.fake_sweep(f"/data/{name}_#####.cbf"), "sad", anomalous=anomalous)


def test_half_the_datasets_flagged_native_merge_anomalous_and_say_so():
    """A SAD sample whose sheet flags only some of its datasets anomalous: merged as
    anomalous for all, and the run log says so with the counts."""
    datasets = [_flagged(f"w{k}", k % 2 == 0) for k in range(6)]
    settings = post.sample_settings(datasets)["sad"]
    assert (settings.n_flagged_anomalous, settings.n_datasets) == (3, 6)
    assert post.merge_options("sad", ProcessingOptions(), sheet=settings).anomalous
    line = post.mixed_anomalous_line("sad", settings)
    assert line and "3 of 6 dataset(s) are flagged anomalous" in line
    assert "merged as anomalous" in line
    every = post.sample_settings([_flagged(f"w{k}", True) for k in range(3)])["sad"]
    assert post.mixed_anomalous_line("sad", every) is None
    native = post.sample_settings([_flagged(f"w{k}", False) for k in range(3)])["sad"]
    assert post.mixed_anomalous_line("sad", native) is None
    assert not post.merge_options("sad", ProcessingOptions(), sheet=native).anomalous
    both = post.combine_settings([settings, every])
    assert (both.n_flagged_anomalous, both.n_datasets) == (6, 9)


def test_a_sheet_that_now_gives_a_heavy_atom_merges_the_sample_again(tmp_path):
    """The same datasets, merged before without the heavy atom: the merge is redone and
    the run log says which options changed; unchanged options keep the merge."""
    from mxflow.catalog.db import Catalog

    seen, logged = [], []

    def merge(inputs, workdir, options):
        seen.append(options)
        return MergeSummary(options.sample, options=options, clusters=[_merged_cluster()])

    def run(settings):
        with Catalog(tmp_path / "out") as cat:
            if not seen:
                for name in ("x1", "x2"):
                    key = f"proc/P1/{name}"
                    ds = Dataset(name, fake.fake_sweep(f"/data/{name}_#####.cbf"), "thas1")
                    cat.add_dataset(key, ds, "sweep", None)
                    r = DatasetResult(name, name, "ok", sample="thas1")
                    r.integrated_expt, r.integrated_refl = f"{key}/i.expt", f"{key}/i.refl"
                    cat.record_result(key, r)
            post.merge_samples(
                tmp_path / "out", cat, ProcessingOptions(), logged.append,
                {"thas1": settings}, merge_fn=merge,
            )  # fmt: skip

    run(post.SampleSettings(anomalous=True))
    run(post.SampleSettings(anomalous=True, heavy_atom="Zn", n_sites=3))
    assert [o.heavy_atom for o in seen] == [None, "Zn"]
    again = [m for m in logged if "merged again" in m]
    assert again == ["mxflow: merge proc/thas1: merged again: heavy_atom, n_sites changed"]
    run(post.SampleSettings(anomalous=True, heavy_atom="Zn", n_sites=3))
    assert len(seen) == 2
    assert any("already merged (the same 2 dataset(s))" in m for m in logged)


def _merged_cluster():
    from mxflow.model import ClusterResult, MergingStats, ShellStats

    shell = ShellStats(d_max=20.0, d_min=2.0, completeness=0.9, multiplicity=3.0, cc_half=0.99)
    return ClusterResult(1, "cc", ["x1", "x2"], ["x1", "x2"], stats=MergingStats.one_shell(shell))
