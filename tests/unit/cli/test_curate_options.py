"""`thaw curate` refuses to write its splits where they could overwrite its own input."""

from thaw_cli.main import main


def test_curate_refuses_an_output_directory_holding_its_input(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    raw = "ticket_id,message,intent\n1,where is my order,shipping\n2,reset my password,login\n"
    (data / "train.csv").write_text(raw, encoding="utf-8")
    argv = ["curate", "--input", str(data / "train.csv"), "--output", str(data), "--workspace", str(tmp_path)]
    argv += ["--text-column", "message", "--label-column", "intent", "--id-column", "ticket_id"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds the input file" in err and "write them to another directory" in err
    assert (data / "train.csv").read_text(encoding="utf-8") == raw


def test_each_output_directory_has_a_work_directory_of_its_own(tmp_path):
    from flows.curation import curation_work_dir

    state = tmp_path / ".thaw"
    one, other = curation_work_dir(state, tmp_path / "a" / "out"), curation_work_dir(state, tmp_path / "b" / "out")
    assert one != other and one.parent == other.parent == state / "curate"
    assert one.name.startswith("out-") and other.name.startswith("out-")
    assert curation_work_dir(state, tmp_path / "a" / ".." / "a" / "out") == one  # the same directory, however named


def test_publishing_replaces_the_data_docs_of_an_earlier_curation(tmp_path):
    from tasks.curation.curate import CuratedDataset, publish_curated
    from thaw.datasets import ColumnMap

    work, output = tmp_path / "work", tmp_path / "out"
    (work / "curated").mkdir(parents=True)
    files = {}
    for split in ("train", "validation", "test"):
        files[split] = work / "curated" / f"{split}.csv"
        files[split].write_text("id,text,label\n1,where is my order,shipping\n", encoding="utf-8")
    for name in ("curation_report.json", "curation_metrics.json"):
        (work / name).write_text("{}", encoding="utf-8")
    (work / "data_docs" / "validations").mkdir(parents=True)
    (work / "data_docs" / "validations" / "this-run.html").write_text("now", encoding="utf-8")
    (output / "data_docs" / "validations").mkdir(parents=True)
    (output / "data_docs" / "validations" / "earlier-run.html").write_text("then", encoding="utf-8")
    curated = CuratedDataset(
        work / "curated", files, work / "curation_report.json", {}, (), work / "curation_metrics.json"
    )
    publish_curated.fn(curated, work, output, ColumnMap("message", "intent", "ticket_id"))
    assert sorted(p.name for p in (output / "data_docs").rglob("*.html")) == ["this-run.html"]
    assert (output / "train.csv").read_text(encoding="utf-8").startswith("ticket_id,message,intent")


def test_curate_refuses_to_replace_a_data_docs_directory_it_did_not_write(tmp_path, capsys):
    data, output = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    (output / "data_docs").mkdir(parents=True)
    (output / "data_docs" / "my-notes.txt").write_text("mine", encoding="utf-8")
    (data / "train.csv").write_text("ticket_id,message,intent\n1,where is my order,shipping\n", encoding="utf-8")
    argv = ["curate", "--input", str(data / "train.csv"), "--output", str(output), "--workspace", str(tmp_path)]
    argv += ["--text-column", "message", "--label-column", "intent", "--id-column", "ticket_id"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds data_docs/, which is not Data Docs an earlier thaw curate wrote" in err
    assert len(err.strip().splitlines()) == 1
    assert (output / "data_docs" / "my-notes.txt").read_text(encoding="utf-8") == "mine"


def test_curate_refuses_to_replace_split_files_no_curation_wrote(tmp_path, capsys):
    """The user's own train.csv in --output (or a report that is not thaw's beside it)
    is refused, not replaced; a curation report beside them says an earlier one wrote them."""
    data, output = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    output.mkdir()
    (data / "train.csv").write_text("ticket_id,message,intent\n1,where is my order,shipping\n", encoding="utf-8")
    argv = ["curate", "--input", str(data / "train.csv"), "--output", str(output), "--workspace", str(tmp_path)]
    argv += ["--text-column", "message", "--label-column", "intent", "--id-column", "ticket_id"]
    (output / "train.csv").write_text("mine", encoding="utf-8")
    for report in (None, "{}", "[" * 5000):
        if report is not None:
            (output / "curation_report.json").write_text(report, encoding="utf-8")
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "holds train.csv" in err and "which no earlier thaw curate wrote" in err, err
        assert len(err.strip().splitlines()) == 1
        assert (output / "train.csv").read_text(encoding="utf-8") == "mine"
    (output / "train.csv").unlink()
    (output / "validation.parquet").write_text("mine", encoding="utf-8")
    assert main([*argv, "--format", "parquet"]) == 2
    assert "holds validation.parquet, curation_report.json, which no earlier" in capsys.readouterr().err
