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
