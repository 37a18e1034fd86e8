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
