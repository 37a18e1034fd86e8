"""Registry values reach the approver's terminal as text: nothing in a tag, a ledger
entry or a reason someone else wrote can move the cursor, hide a line or reorder one."""

from thaw_cli.common import terminal_safe


def test_what_a_terminal_would_act_on_is_written_as_an_escape():
    hidden = "ok\r\x1b[2K\x1b[1AWARNING gone\u202etxt.exe\nfake line\u2028\x9b\x7f\tend"
    shown = terminal_safe(hidden)
    assert shown == "ok\\r\\x1b[2K\\x1b[1AWARNING gone\\u202etxt.exe\\nfake line\\u2028\\x9b\\x7f\\tend"
    assert shown.isprintable()


def test_text_in_any_script_and_its_spaces_and_joiners_pass_unchanged():
    text = "Ana\u00a0Lima · Zoë · 東京 · שלום · مي\u200cخواهم · 👩\u200d💻"
    assert terminal_safe(text) == text


def test_an_error_keeps_the_lines_thaw_gave_it_and_escapes_those_a_value_brought(capsys):
    """thaw's error line: a failed-expectations error is one line per failure (it read as
    one line of literal \\n before); a newline inside a quoted value is still escaped."""
    from thaw.errors import ExpectationsFailed, UserError
    from thaw_cli.main import report_user_error

    report_user_error(ExpectationsFailed(["train: too few rows", "labels: 'a\nb' \x1b[2K"]))
    assert capsys.readouterr().err == (
        "thaw: error: curated data failed its expectations; training did not start:\n"
        "  - train: too few rows\n  - labels: 'a\\nb' \\x1b[2K\n"
    )
    report_user_error(UserError("tag reads 'x\nthaw: the lineage verifies'"))
    assert capsys.readouterr().err == "thaw: error: tag reads 'x\\nthaw: the lineage verifies'\n"


def test_every_line_the_cli_writes_goes_through_say():
    """ruff's T201 flags a ``print`` to stdout, not one given ``file=``; this reads every
    call: only ``say`` and ``say_json`` in ``thaw_cli/common.py`` print."""
    import ast
    from pathlib import Path

    import thaw_cli

    printing = []

    class Prints(ast.NodeVisitor):
        def __init__(self, module: str):
            self.module, self.within = module, ["<module>"]

        def visit_FunctionDef(self, node):
            self.within.append(node.name)
            self.generic_visit(node)
            self.within.pop()

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Call(self, node):
            if isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append((self.module, self.within[-1]))
            self.generic_visit(node)

    for path in sorted(Path(thaw_cli.__file__).parent.glob("*.py")):
        Prints(path.name).visit(ast.parse(path.read_text(encoding="utf-8")))
    assert sorted(printing) == [("common.py", "say"), ("common.py", "say_json")], printing


def test_thaw_serves_error_line_is_terminal_safe(tmp_path, capsys):
    """The server ``thaw serve`` starts reads its plan as input; a refusal quotes the
    plan's path, which may carry what a terminal acts on."""
    import json

    from thaw_cli import serving_app

    plan = tmp_path / "plan\x1b[2K\rok.json"
    plan.write_text(json.dumps({"model": "tickets", "mode": "everything"}), encoding="utf-8")
    assert serving_app.main([str(plan)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thaw serve: error: ") and err.count("\n") == 1, err
    assert "\x1b" not in err and "\r" not in err and "plan\\x1b[2K\\rok.json: unknown mode 'everything'" in err


def test_json_output_writes_every_character_a_terminal_acts_on_as_an_escape(capsys):
    from thaw_cli.common import say_json

    say_json({"reason": "ok\r\x1b[2K\x7f\x9b\u202efake\nline"})
    out = capsys.readouterr().out
    assert out.isascii() and not any(ch in out for ch in "\r\x1b\x7f")
    assert out.count("\n") == 3  # "{", the one member, "}": the value's newline is "\n" in the text
