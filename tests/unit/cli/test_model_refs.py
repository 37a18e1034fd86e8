"""Model names, aliases and versions typed on the command line reach registry search
filters and MLflow calls: anything thaw would not give is refused by the parser, in one
line, before any store is opened (a name with a quote, which anyone may create in the
MLflow UI, ended `thaw ledger` in MLflow's filter-syntax traceback)."""

from __future__ import annotations

import pytest

from thaw_cli.main import build_parser, main

GOOD = [
    ["ledger", "tickets"],
    ["approve", "tickets", "12", "--reason", "ok"],
    ["lineage", "tickets@champion"],
    ["lineage", "tickets/3"],
    ["predict", "my.model-1@challenger", "--input", "a.csv", "--output", "b.csv"],
    ["serve", "tickets"],
    ["monitor", "tickets@champion", "--input", "a.csv"],
]
BAD = {
    ("ledger", "an insider's model"): "is not a model name",
    ("approve", "tickets", "1'", "--reason", "ok"): 'argument version: "1\'" is not a version number',
    ("approve", "x' OR name LIKE '%", "1", "--reason", "ok"): "is not a model name",
    ("lineage", "tickets@y'z"): '"y\'z" is not an alias',
    ("lineage", "tickets/0"): "'0' is not a version number",
    ("lineage", "a/b/3"): "'a/b' is not a model name",
    ("canary", "-tickets"): "",  # argparse reads it as an option: refused all the same
    ("restore-data", "tickets@", "--to", "d"): "'' is not an alias",
    # the byte 0xff from a Latin-1 terminal, as Python reads argv (surrogateescape)
    ("approve", "tickets", "1", "--reason", "ok \udcff"): "argument --reason: holds a byte that is not UTF-8",
    ("rollback", "tickets", "--reason", "\udcff"): "(read as \\udcff); retype it",
}


@pytest.mark.parametrize("argv", GOOD, ids=lambda a: " ".join(a))
def test_names_aliases_and_versions_thaw_gives_are_taken_as_typed(argv):
    assert build_parser().parse_args(argv).model == argv[1]


@pytest.mark.parametrize("argv", sorted(BAD), ids=" ".join)
def test_anything_else_is_refused_in_one_line_naming_it(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as typed in a project: `thaw ...` (main, the console script's entry)
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--workspace", str(tmp_path)])
    assert refused.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"thaw {argv[0]}: error: ") and BAD[argv] in error, error
    assert list(tmp_path.iterdir()) == []  # before any store was opened: no tracking store, no state


def test_a_reference_given_as_a_deployment_parameter_is_checked_the_same_way():
    """``thaw monitor`` on a schedule reads its model reference from the deployment's
    parameters, which anyone who may edit the deployment can change."""
    from tasks.tracking.client import parse_model_ref
    from thaw.errors import UserError

    assert parse_model_ref("tickets") == ("tickets", "challenger", None)
    assert parse_model_ref("tickets@champion") == ("tickets", "champion", None)
    assert parse_model_ref("tickets/7") == ("tickets", None, "7")
    for ref, why in (
        ("tickets@x') OR 1", "is not an alias"),
        ("tick ets", "is not a model name"),
        ("t/07", "not a ver"),
    ):
        with pytest.raises(UserError, match=f"expected NAME@ALIAS or NAME/VERSION; .*{why}"):
            parse_model_ref(ref)


@pytest.mark.parametrize("argv", GOOD, ids=lambda a: " ".join(a))
def test_a_command_reading_models_where_thaw_never_ran_says_so_and_makes_no_store(argv, capsys, tmp_path, monkeypatch):
    # typed in the wrong directory, it made an empty MLflow store and Prefect state there,
    # then reported the model missing
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main([*argv, "--workspace", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"thaw: error: {tmp_path}: not a thaw workspace ({tmp_path}/.thaw/mlflow.db does not exist: nothing was run "
        "here); run the command in the workspace, or give --workspace"
    )
    assert list(tmp_path.iterdir()) == []
