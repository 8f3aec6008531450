"""Issue #12, items 2, 3, 5 and 9: samples renamed after processing, hostile sample names,
a workdir inside the raw data, and faults (disk full, read-only) as one-line messages.

Everything runs on the fake processing function (no DIALS).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest

from mxflow.catalog.db import Catalog
from mxflow.model import ClusterResult, Dataset, MergeSummary, MergingStats, ShellStats
from mxflow.schedule import fake
from mxflow.schedule.collection import RunConfig, run_collection

FAKE_PROCESS = "mxflow.schedule.fake:process_dataset"
FAKE_DISCOVER = "mxflow.schedule.fake:discover_collection"


def config(**kw) -> RunConfig:
    kw.setdefault("workers", 1)
    return RunConfig(
        process_fn=FAKE_PROCESS, discover_fn=FAKE_DISCOVER, progress=False, settle_s=0, **kw
    )


def write_pins(root: Path, samples: dict[str, str]) -> None:
    """One fake dataset per name in ``samples`` (name → sample), each in its own folder."""
    for i, (name, sample) in enumerate(sorted(samples.items())):
        t = f"{root}/CPS0001-{i:02d}/data00/{name}_#####.cbf"
        ds = Dataset(name=name, sweep=fake.fake_sweep(t), sample=sample, mode="multi")
        fake.write_fake_dataset(root, ds)


def give_integrated_files(out: Path) -> None:
    """The fake results name no integrated files; give each ok one a (fake) pair so that
    the merge is handed it."""
    with Catalog(out) as cat:
        for row in cat.rows("ok"):
            r = cat.result(row["key"])
            r.integrated_expt = f"{row['key']}/integrated.expt"
            r.integrated_refl = f"{row['key']}/integrated.refl"
            cat.record_result(row["key"], r)


class RecordingMerge:
    """A merge function that records what it was given and 'merges' one cluster."""

    def __init__(self):
        self.calls: list[tuple[str, list[str], Path]] = []

    def __call__(self, inputs, workdir, options):
        self.calls.append((options.sample, [i.sample for i in inputs], Path(workdir)))
        stats = MergingStats.one_shell(ShellStats(40.0, 2.0, completeness=0.99))
        cluster = ClusterResult(1, "cc", [i.name for i in inputs], stats=stats)
        return MergeSummary(options.sample, clusters=[cluster])


# -- item 2: a sample renamed after processing ------------------------------------


def test_samples_renamed_after_processing_merge_under_the_new_name(tmp_path):
    """Processed as samples lyso/thau, then the sheet renames thau to thaumatin: the merge
    is of thaumatin, every dataset it is given says thaumatin (the merge keeps only the
    datasets of its sample), and the merge of thau, a sample that no longer exists, is no
    longer listed."""
    from mxflow.schedule import post

    root, out = tmp_path / "root", tmp_path / "out"
    write_pins(root, {"a1": "lyso", "a2": "lyso", "b1": "thau", "b2": "thau"})
    run_collection(root, out, config(merge=False), log=lambda m: None)
    give_integrated_files(out)
    merge = RecordingMerge()
    with Catalog(out) as cat:
        post.merge_samples(out, cat, config().options, lambda m: None, merge_fn=merge)
        assert {m.name: m.status for m in cat.merges()} == {"proc/lyso": "ok", "proc/thau": "ok"}

    write_pins(root, {"a1": "lyso", "a2": "lyso", "b1": "thaumatin", "b2": "thaumatin"})
    run_collection(root, out, config(merge=False), log=lambda m: None)
    merge.calls.clear()
    with Catalog(out) as cat:
        assert {r["sample"] for r in cat.rows()} == {"lyso", "thaumatin"}
        post.merge_samples(out, cat, config().options, lambda m: None, merge_fn=merge)
        merges = {m.name: m for m in cat.merges()}
    assert [(s, given) for s, given, _ in merge.calls] == [
        ("thaumatin", ["thaumatin", "thaumatin"])
    ]
    assert set(merges) == {"proc/lyso", "proc/thaumatin"}  # proc/thau: gone
    assert merges["proc/thaumatin"].status == "ok"
    summary = json.loads((out / "summary.json").read_text())
    assert {m["name"] for m in summary["merges"]} == {"proc/lyso", "proc/thaumatin"}


def test_renamed_sample_merges_with_the_real_input_collection(tmp_path):
    """The same through the real merge's input collection (collect_inputs keeps only the
    datasets of the merge's sample): the renamed sample's datasets are all found."""
    from mxflow.merge import inputs as merge_inputs_mod
    from mxflow.schedule import post

    root, out = tmp_path / "root", tmp_path / "out"
    write_pins(root, {"b1": "thau", "b2": "thau"})
    run_collection(root, out, config(merge=False), log=lambda m: None)
    give_integrated_files(out)
    write_pins(root, {"b1": "thaumatin", "b2": "thaumatin"})
    run_collection(root, out, config(merge=False), log=lambda m: None)
    seen: list[list[str]] = []

    def merge(inputs, workdir, options):
        found = merge_inputs_mod._Found(options.sample)
        for res in inputs:
            found.add_result(res, None)
        # the fake files do not exist: a dataset of this sample is rejected for that,
        # one the merge takes for another sample's is silently left out
        seen.append(sorted(it.name for it in [*found.inputs, *found.rejected]))
        return MergeSummary(options.sample)

    with Catalog(out) as cat:
        post.merge_samples(out, cat, config().options, lambda m: None, merge_fn=merge)
    assert seen == [["b1", "b2"]]


# -- item 3: sample names that read as paths ----------------------------------------

HOSTILE = ["../../escape", "a/../../b", "..", ".hidden", "", "   ", "x\x00y", "x\ny", "a\\b"]


@pytest.mark.parametrize("name", HOSTILE)
def test_sample_names_that_read_as_paths_are_usage_errors(name, capsys):
    """merge --sample and run --sample: exit 2 with one line naming the option, before
    anything is written."""
    from mxflow.cli import main

    for argv in (
        ["merge", "in", "--workdir", "out", "--sample", name],
        ["run", "root", "--workdir", "out", "--sample", name],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--sample" in err and "sample name" in err and "Traceback" not in err


def test_sample_sheet_name_that_reads_as_a_path_is_refused_naming_the_row(tmp_path):
    from mxflow.discover.collection import read_sample_sheet
    from mxflow.errors import BadInputError

    sheet = tmp_path / "sheet.csv"
    sheet.write_text("pin,name\nCPS1-1,lyso\nCPS1-2,../../escape\n")
    with pytest.raises(BadInputError) as exc:
        read_sample_sheet(sheet)
    msg = str(exc.value)
    assert "sheet.csv" in msg and "line 3" in msg and "'../../escape'" in msg
    sheet.write_text("pin,name\nCPS1-1,lyso zyme+1\n")  # odd but harmless: kept as given
    assert [e.name for e in read_sample_sheet(sheet)] == ["lyso zyme+1"]


def _files_under(top: Path) -> set[Path]:
    return {p for p in top.rglob("*")}


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", "lyso zyme"])
def test_every_file_of_a_merge_stays_in_its_workdir(tmp_path, name):
    """merge_sample called with any sample name (the library, past the CLI's check): every
    file and folder it writes is under the workdir."""
    from mxflow.merge.pipeline import MergeLayout, merge_sample
    from mxflow.model import MergeOptions

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "summary.json").write_text(json.dumps({"datasets": []}))
    work = tmp_path / "deep" / "er" / "work"
    before = _files_under(tmp_path)
    merge_sample([inputs], work, MergeOptions(sample=name))
    new = _files_under(tmp_path) - before
    assert new and all(
        p.resolve().is_relative_to(work.resolve()) or p in work.parents for p in new
    ), sorted(new)
    layout = MergeLayout(work, name, 1.5)
    for path in (layout.summary, layout.prep, layout.method_dir("cc"), layout.cluster_dir("cc", 3)):
        assert path.resolve().is_relative_to(work.resolve()) and path.parent.name != ".."


# -- item 5: the workdir and the input trees ----------------------------------------


def _usage_error(argv, capsys) -> str:
    from mxflow.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_workdir_in_the_raw_data_is_refused(tmp_path, capsys, monkeypatch):
    """run / watch / process / hitmap: a --workdir equal to or inside an input tree (the
    image folder itself too, and given relative) is a usage error; nothing is written."""
    root = tmp_path / "data"
    images = root / "CPS1-01" / "data00"
    images.mkdir(parents=True)
    frame = images / "x_00001.cbf"
    frame.write_bytes(b"###CBF")
    before = _files_under(tmp_path)
    monkeypatch.chdir(tmp_path)
    cases = [
        ["run", str(root), "--workdir", str(root)],
        ["run", str(root), "--workdir", str(images)],
        ["run", "data", "--workdir", "data/CPS1-01/out"],
        ["watch", str(root), "--workdir", str(root / "out")],
        ["process", str(images), "--workdir", str(images / "proc")],
        ["process", str(frame), "--workdir", str(images)],
        ["hitmap", str(frame), "--workdir", str(images)],
    ]
    for argv in cases:
        err = _usage_error(argv, capsys)
        assert "--workdir" in err and "never writes into the raw data" in err, argv
    assert _files_under(tmp_path) == before


def test_workdir_beside_the_data_and_merge_of_a_whole_out_are_accepted(tmp_path):
    from mxflow.cli import build_parser, check_workdir

    root = tmp_path / "data"
    root.mkdir()
    for argv in (
        ["run", str(root), "--workdir", str(tmp_path / "out")],
        ["run", str(root), "--workdir", str(tmp_path / "database")],  # a prefix, not inside
        ["merge", str(tmp_path / "out"), "--workdir", str(tmp_path / "out")],
    ):
        args = build_parser(argv[0]).parse_args(argv)
        args._parser = None  # never used: no error
        check_workdir(args)
        assert Path(args.workdir).is_absolute()


def test_workdir_that_is_a_file_or_empty_is_a_usage_error(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for cmd in ("run", "process", "merge", "hitmap"):
        err = _usage_error([cmd, str(tmp_path / "in"), "--workdir", str(a_file)], capsys)
        assert "--workdir" in err and "is a file, not a folder" in err, cmd
        err = _usage_error([cmd, str(tmp_path / "in"), "--workdir", ""], capsys)
        assert "--workdir" in err and "is empty" in err, cmd


# -- item 9: faults as one-line messages ----------------------------------------------


@pytest.mark.parametrize(
    "fault, words",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/x/out/proc/a1/r.json"),
            "no space left",
        ),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/x/out/summary.json"), "no space left"),
        (OSError(errno.EROFS, "Read-only file system", "/x/out/proc"), "cannot write"),
        (PermissionError(errno.EACCES, "Permission denied", "/x/out/proc"), "cannot write"),
        (sqlite3.OperationalError("database or disk is full"), "no space left"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "cannot write"),
    ],
)
def test_disk_full_and_read_only_faults_are_one_line(tmp_path, capsys, monkeypatch, fault, words):
    """A fault raised inside a command run through cli.main: exit 1, one line on stderr
    naming the path and saying the same command resumes; no traceback."""
    from mxflow.cli import main
    from mxflow.schedule import collection

    def boom(*a, **k):
        raise fault

    monkeypatch.setattr(collection, "run_collection", boom)
    root = tmp_path / "root"
    root.mkdir()
    out = tmp_path / "out"
    assert main(["run", str(root), "--workdir", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("mxflow run: error: ") and words in err
    assert "running the same command again" in err
    assert (fault.filename if isinstance(fault, OSError) else str(out)) in err


def test_other_errors_still_raise(tmp_path, monkeypatch):
    """Only disk and permission faults become messages: a bug keeps its traceback."""
    from mxflow.cli import main
    from mxflow.schedule import collection

    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(collection, "run_collection", boom)
    (tmp_path / "root").mkdir()
    with pytest.raises(OSError):
        main(["run", str(tmp_path / "root"), "--workdir", str(tmp_path / "out")])


def _processed_out(tmp_path: Path) -> Path:
    root, out = tmp_path / "root", tmp_path / "out"
    write_pins(root, {"a1": "lyso", "a2": "lyso"})
    run_collection(root, out, config(merge=False), log=lambda m: None)
    return out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_status_and_report_on_a_read_only_out(tmp_path, capsys):
    """status reads a read-only OUT (the catalog as an immutable file); report says in one
    line that it cannot write there."""
    from mxflow.cli import main

    out = _processed_out(tmp_path)
    for p in [out, *out.rglob("*")]:
        if p.is_dir():
            p.chmod(0o555)
    try:
        assert main(["status", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "a1" in printed and "a2" in printed, printed
        status = main(["report", str(out)])
        err = capsys.readouterr().err
        assert status != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        for p in [out, *out.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)


def test_status_reads_a_catalog_whose_folder_cannot_be_written(tmp_path, monkeypatch, capsys):
    """As root (whom chmod does not stop), the read-only folder is simulated: SQLite cannot
    open the WAL database read-only there, and the folder is not writable; status still
    lists the datasets."""
    from mxflow.catalog import db
    from mxflow.cli import main

    out = _processed_out(tmp_path)
    real_connect = sqlite3.connect

    class NoSharedMemory:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, *a):
            raise sqlite3.OperationalError("unable to open database file")

        def close(self):
            self.conn.close()

    def connect(database, *a, **k):
        conn = real_connect(database, *a, **k)
        return conn if "immutable=1" in str(database) else NoSharedMemory(conn)

    monkeypatch.setattr(db.sqlite3, "connect", connect)
    monkeypatch.setattr(db.os, "access", lambda path, mode: False)
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a1" in printed and "a2" in printed, printed
