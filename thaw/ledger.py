"""The promotion ledger as data: hash-chained entries, their verification and replay.

Pure functions; ``tasks/release/ledger.py`` reads and writes the entries (registered-model tags).

Each operation that can move an alias (register, approve, reject, rollback) writes an
**intent** entry before it acts and a **completion** after, with the same ``op`` id; the
completion says what happened (``applied``, ``refused``, ``not-applied``) and, when a
later process wrote it after a crash, who recovered it. Notes (a broken lock, a manual
unlock, an approval requested in the Prefect form) are single ``record`` entries.

Every entry holds the digest of the one before it (``prev``) and its own ``digest``
(SHA-256 of its canonical JSON without that field), so an edited entry no longer matches
its digest and a deleted one leaves a gap in the chain. A head anchor (count and last
digest) catches a deleted last entry. Keys are unique (time in ns and the op id), never a
count, so nothing overwrites an entry.

With an approvers file (``thaw.signing``) every entry also names its signer's key and
carries an Ed25519 signature of its digest: a chain recomputed by someone without the
actor's key (edited, forged, or re-linked around a removed entry) no longer verifies.
An approver may **acknowledge** the problems ``verify`` reports (a signed entry listing
their digests and the champion to adopt): they stay in the report, as notes naming who
acknowledged them, and operations can go on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thaw.approval_record import ENTRY_TAG, Decision, applied, decisions, is_version, tag_problems
from thaw.parse import json_value
from thaw.shown import md_text

if TYPE_CHECKING:
    from thaw.signing import Approvers

KEY_PREFIX = "thaw.ledger."
HEAD_TAG = "thaw.ledger_head"
TEXT_PREFIX = "thaw.ledger_text."
GENESIS = "genesis"
SCHEMA = 1
INLINE_TEXT = 400  # characters of a reason kept in the entry itself
TEXT_PART = 4000  # characters per continuation tag (MLflow's smallest tag column is 5000)
ALIAS_MOVING = ("register", "approve", "reject", "rollback")
ACKNOWLEDGE = "acknowledge"
TEXT_FIELDS = ("reason", "details")  # free text that may outgrow a tag


def canonical_json(body: Mapping[str, Any]) -> str:
    """The one serialisation digests are computed over (sorted keys, no spaces)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


UNSIGNED_FIELDS = ("digest", "signature", "key")  # not covered by the digest: the digest itself, what signs it, the tag


def entry_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the entry without its own ``digest``, its ``signature`` and tag ``key``."""
    covered = {k: v for k, v in body.items() if k not in UNSIGNED_FIELDS}
    return hashlib.sha256(canonical_json(covered).encode()).hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_key(time_ns: int, op: str, phase: str) -> str:
    """A unique, time-ordered tag key for an entry (order proper comes from the chain)."""
    return f"{KEY_PREFIX}{time_ns:020d}.{op}.{phase}"


def text_keys(key: str, name: str, parts: int) -> list[str]:
    """Tag keys holding the continuation of the long text field ``name`` of the entry at ``key``."""
    return [f"{TEXT_PREFIX}{key.removeprefix(KEY_PREFIX)}.{name}.{i}" for i in range(1, parts + 1)]


def split_text(name: str, text: str) -> tuple[dict[str, Any], list[str]]:
    """Entry fields for the text field ``name`` and the continuation parts of a long one:
    the first INLINE_TEXT characters stay inline, the whole text is bound by its digest."""
    fields: dict[str, Any] = {name: text[:INLINE_TEXT]}
    if len(text) <= INLINE_TEXT:
        return fields, []
    rest = text[INLINE_TEXT:]
    parts = [rest[i : i + TEXT_PART] for i in range(0, len(rest), TEXT_PART)]
    return {**fields, f"{name}_parts": len(parts), f"{name}_sha256": text_digest(text)}, parts


def full_text(entry: Mapping[str, Any], name: str, tags: Mapping[str, str]) -> tuple[str, str | None]:
    """The reassembled text field ``name`` of an entry, and a problem if its parts are
    missing or do not match the digest the entry holds."""
    parts = int(entry.get(f"{name}_parts", 0) or 0)
    if not parts:
        return entry.get(name, ""), None
    keys = text_keys(entry["key"], name, parts)
    missing = [k for k in keys if k not in tags]
    if missing:
        return entry.get(name, ""), f"{entry['key']}: {len(missing)} of {parts} parts of its {name} are missing"
    text = entry.get(name, "") + "".join(tags[k] for k in keys)
    if text_digest(text) != entry.get(f"{name}_sha256"):
        return text, f"{entry['key']}: its {name} was edited (digest mismatch)"
    return text, None


def seal(fields: Mapping[str, Any], prev: str, private_key=None) -> dict[str, Any]:
    """The entry body for ``fields`` chained after ``prev``, with its digest and, given
    the actor's ``private_key``, the key's fingerprint and a signature of the digest."""
    from thaw.signing import fingerprint, raw_public_key, sign

    body = {"schema": SCHEMA, **fields, "prev": prev}
    if private_key is not None:
        body["signer"] = fingerprint(raw_public_key(private_key))
    body["digest"] = entry_digest(body)
    if private_key is not None:
        body["signature"] = sign(private_key, body["digest"])
    return body


def head_value(count: int, digest: str) -> str:
    return f"{count}:{digest}"


@dataclass(frozen=True)
class Operation:
    """An intent and, once written, its completion."""

    op: str
    intent: dict[str, Any]
    completion: dict[str, Any] | None

    @property
    def action(self) -> str:
        return self.intent["action"]


@dataclass(frozen=True)
class LedgerReport:
    """What the tags say, in chain order, and what is wrong with them."""

    entries: tuple[dict[str, Any], ...]
    problems: tuple[str, ...]  # tampering or inconsistency: --verify fails
    notes: tuple[str, ...]  # benign: e.g. a head anchor one write behind after a crash
    open_operations: tuple[Operation, ...]  # intents without a completion
    champion: str | None  # replayed from applied completions
    champion_history: tuple[str, ...] = field(default=())  # promote pushes, rollback pops
    signed: bool = False  # signatures were checked against an approvers file
    # each version's approval state by the ledger's applied operations (thaw.approval_record)
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    challenger: str | None = None  # replayed from applied completions, as the champion

    def backs(self, alias: str, version: str | None) -> bool:
        """Whether the ledger puts ``alias`` (champion or challenger) on ``version``: its
        replay does, or an operation still open was moving it there (the next operation
        completes it). Only when the ledger verifies."""
        if self.problems:
            return False
        moving = {"champion": ("approve", "rollback"), "challenger": ("register",)}[alias]
        replayed = self.champion if alias == "champion" else self.challenger
        opened = {o.intent.get("version") for o in self.open_operations if o.action in moving}
        return version == replayed or version in opened

    def decision(self, version: str) -> Decision | None:
        """``version``'s approval as the ledger records it; None: never registered through it."""
        return self.decisions.get(str(version))

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def head(self) -> str:
        return self.entries[-1]["digest"] if self.entries else GENESIS


def read_entries(tags: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Entries by tag key, and problems with tags that are not entries."""
    entries, problems = {}, []
    for key in sorted(k for k in tags if k.startswith(KEY_PREFIX)):
        try:
            body = json_value(tags[key])
            if not isinstance(body, dict) or "digest" not in body or "prev" not in body:
                raise ValueError
        except ValueError:
            problems.append(f"{key} is not a ledger entry (unreadable): edited or written by something else")
            continue
        entries[key] = {**body, "key": key}
    return entries, problems


def order_chain(entries: Mapping[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Entries in chain order from the genesis, and problems: edits (digest mismatch),
    gaps (a prev matching no entry: something was deleted) and forks (two entries
    after the same one: written without the lock)."""
    problems = []
    for key, e in entries.items():
        if entry_digest(e) != e["digest"]:
            problems.append(f"{key} was edited after it was written (its digest no longer matches)")
    after: dict[str, list[dict[str, Any]]] = {}
    for e in entries.values():
        after.setdefault(e["prev"], []).append(e)
    for prev, nexts in after.items():
        if len(nexts) > 1:
            keys = ", ".join(sorted(n["key"] for n in nexts))
            problems.append(f"the chain forks after {prev[:12]}: {keys} (written without holding the lock)")
    digests = {e["digest"] for e in entries.values()}
    for e in entries.values():
        if e["prev"] != GENESIS and e["prev"] not in digests:
            problems.append(f"the entry before {e['key']} is missing (no entry has digest {e['prev'][:12]}): deleted")
    ordered, seen, current = [], set(), GENESIS
    while current in after and current not in seen:
        seen.add(current)
        nxt = min(after[current], key=lambda n: n["key"])
        ordered.append(nxt)
        current = nxt["digest"]
    stray = sorted((e for e in entries.values() if e["digest"] not in {o["digest"] for o in ordered}), key=_key)
    return ordered + stray, problems


def _key(e: dict[str, Any]) -> str:
    return e["key"]


def operations(entries: list[dict[str, Any]]) -> tuple[list[Operation], list[str]]:
    """Intents joined with their completions, in order; problems for orphan completions."""
    intents: dict[str, dict[str, Any]] = {}
    done: dict[str, dict[str, Any]] = {}
    problems = []
    for e in entries:
        if e.get("phase") == "intent":
            intents[e["op"]] = e
        elif e.get("phase") == "completion":
            if e["op"] not in intents:
                problems.append(f"{e['key']} completes operation {e['op']} whose intent is missing")
            done[e["op"]] = e
    return [Operation(op, intent, done.get(op)) for op, intent in intents.items()], problems


VERSION_FIELDS = (
    "version",
    "champion_before",
    "champion_after",
    "challenger_before",
    "challenger_after",
    "champion",
    "challenger",
)


def _version_problems(ordered: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['key']}: its {name} {str(e[name])[:40]!r} is not a version number"
        for e in ordered
        for name in VERSION_FIELDS
        if e.get(name) is not None and not is_version(e[name])
    ]


def replay_champion(entries: list[dict[str, Any]]) -> tuple[str | None, tuple[str, ...]]:
    """The champion the applied operations leave, in the order they completed, and the
    promotion history (a stack that rollbacks pop; an acknowledgement adopts the champion
    it names)."""
    intents = {e["op"]: e for e in entries if e.get("phase") == "intent"}
    stack: list[str] = []
    for e in entries:
        if e.get("action") == ACKNOWLEDGE and e.get("phase") == "record":
            adopted = e.get("champion")
            if adopted is None:
                stack.clear()
            elif is_version(adopted) and (not stack or stack[-1] != adopted):
                stack.append(str(adopted))
            continue
        intent = intents.get(e.get("op"))
        if e.get("phase") != "completion" or intent is None or e.get("outcome") != "applied":
            continue
        if not is_version(intent.get("version")):
            continue  # a rollback moves the alias to what this replays: only version numbers count
        if intent["action"] == "approve":
            stack.append(intent["version"])
        elif intent["action"] == "rollback" and stack:
            stack.pop()
            if not stack or stack[-1] != intent["version"]:
                stack.append(intent["version"])
    return (stack[-1] if stack else None), tuple(stack)


def replay_challenger(entries: list[dict[str, Any]]) -> str | None:
    """The challenger the applied operations leave: set by a registration, taken off by
    the approval or rejection of the version it is on; an acknowledgement that names a
    challenger adopts it (older ones name none and change nothing)."""
    adopted = {e["op"]: e for e in entries if e.get("action") == ACKNOWLEDGE and "challenger" in e}
    applied_by_op = {intent["op"]: intent for intent in applied(entries)}
    challenger = None
    for e in entries:
        if e.get("op") in adopted and e.get("phase") == "record":
            named = e["challenger"]
            challenger = named if is_version(named) else None
            continue
        intent = applied_by_op.get(e.get("op")) if e.get("phase") == "completion" else None
        if intent is None:
            continue
        if intent["action"] == "register":
            challenger = intent["version"]
        elif intent["action"] in ("approve", "reject") and challenger == intent["version"]:
            challenger = None
    return challenger


def verify(
    tags: Mapping[str, str],
    champion_alias: str | None,
    version_tags: Mapping[str, Mapping[str, str]] | None = None,
    approvers: Approvers | None = None,
    model: str = "",
    challenger_alias: str | None = None,
) -> LedgerReport:
    """Check the chain, the head anchor, long reasons, the aliases against the replay,
    each version's approval tags against the ledger's decision of it
    (``thaw.approval_record``) and, given the ``approvers`` file, every entry's signature
    and permission (entries up to the file's adopted unsigned history of ``model``
    excepted). ``version_tags`` maps a version to its ``thaw.approval*`` tags; given it,
    ``challenger_alias`` (read with them) is checked too. None: the versions were not
    read, and neither is checked."""
    entries, problems = read_entries(tags)
    ordered, chain_problems = order_chain(entries)
    problems += chain_problems
    notes: list[str] = []
    for e in ordered:
        for name in TEXT_FIELDS:
            _, problem = full_text(e, name, tags)
            if problem:
                problems.append(problem)
    problems += _head_problems(tags.get(HEAD_TAG), ordered, notes)
    untrusted: set[str] = set()  # entries whose signature does not hold: they explain nothing
    if approvers is not None:
        signature_problems, untrusted = _signature_problems(ordered, approvers, model)
        problems += signature_problems
    else:
        notes.append("entries are unsigned: there is no approvers file to check them against")
    problems += _version_problems(ordered)
    ops, op_problems = operations(ordered)
    problems += op_problems
    open_ops = tuple(o for o in ops if o.completion is None and o.intent["key"] not in untrusted)
    trusted = [e for e in ordered if e["key"] not in untrusted]
    champion, history = replay_champion(trusted)
    if not open_ops and champion != champion_alias:
        problems.append(
            f"the champion alias is on {_v(champion_alias)} but the ledger leaves {_v(champion)}: "
            "the alias was moved outside thaw"
        )
    decided, challenger = decisions(trusted), replay_challenger(trusted)
    if version_tags is not None:
        problems += _approval_tag_problems(version_tags, decided, {e["digest"] for e in ordered}, open_ops)
        if not open_ops and challenger != challenger_alias:
            problems.append(
                f"the challenger alias is on {_v(challenger_alias)} but the ledger leaves {_v(challenger)}: "
                "the alias was moved outside thaw"
            )
    problems, acknowledged = _acknowledged(ordered, problems)
    return LedgerReport(
        tuple(ordered),
        tuple(problems),
        tuple(notes + acknowledged),
        open_ops,
        champion,
        history,
        approvers is not None,
        decided,
        challenger,
    )


def _approval_tag_problems(
    version_tags: Mapping[str, Mapping[str, str]],
    decided: Mapping[str, Decision],
    digests: set[str],
    open_ops: tuple[Operation, ...],
) -> list[str]:
    """Version approval tags the ledger does not back. A version an interrupted operation
    was deciding is left out: its tags may be half written, and the open operation is
    reported (and finished by the next operation) on its own."""
    deciding = {o.intent.get("version") for o in open_ops if o.action in ("approve", "reject")}
    problems = []
    for version, tags in sorted(version_tags.items()):
        cited = tags.get(ENTRY_TAG)
        if cited is not None and cited not in digests:
            problems.append(f"version {version} cites ledger entry {cited[:12]}, which is not in the ledger: deleted")
        elif version not in deciding:
            problems += tag_problems(version, tags, decided.get(version))
    return problems


def problem_digest(problem: str) -> str:
    """How an acknowledgement names a problem ``verify`` reported."""
    return text_digest(problem)[:32]


def _acknowledged(ordered: list[dict[str, Any]], problems: list[str]) -> tuple[list[str], list[str]]:
    """Problems no acknowledgement covers, and notes for those one does."""
    by_digest = {}
    for e in ordered:
        if e.get("action") == ACKNOWLEDGE and e.get("phase") == "record":
            for d in e.get("acknowledged") or []:
                by_digest.setdefault(d, e)
    left, notes = [], []
    for p in problems:
        ack = by_digest.get(problem_digest(p))
        if ack is None:
            left.append(p)
        else:
            notes.append(f"acknowledged by {ack.get('by')} at {str(ack.get('at', ''))[:19]}: {p}")
    return left, notes


def _signature_problems(ordered: list[dict[str, Any]], approvers: Approvers, model: str) -> tuple[list[str], set[str]]:
    """Signature problems of every entry after the unsigned history the approvers file
    adopts for ``model`` (if any), and the keys of the entries that have one."""
    from thaw.signing import entry_problems

    adopted = approvers.unsigned_history.get(model)
    digests = [e["digest"] for e in ordered]
    if adopted is not None and adopted not in digests:
        problem = f"{approvers.path} adopts unsigned history up to entry {adopted[:12]} of {model}, which is not in it"
        return [problem], set()
    start = digests.index(adopted) + 1 if adopted is not None else 0
    problems, untrusted = [], set()
    for e in ordered[start:]:
        found = entry_problems(e, approvers)
        if found:
            problems += found
            untrusted.add(e["key"])
    return problems, untrusted


def _v(version: str | None) -> str:
    return f"v{version}" if version else "no version"


def _head_problems(head: str | None, ordered: list[dict[str, Any]], notes: list[str]) -> list[str]:
    if head is None:
        return ["the ledger has entries but no head anchor: deleted"] if ordered else []
    count_text, _, digest = head.partition(":")
    count = int(count_text) if count_text.isdigit() else -1
    last = ordered[-1]["digest"] if ordered else GENESIS
    if (count, digest) == (len(ordered), last):
        return []
    if count == len(ordered) - 1 and (digest == ordered[-1]["prev"]):
        notes.append("the head anchor is one entry behind (a writer stopped after the entry): repaired on next write")
        return []
    if count > len(ordered):
        return [f"the head anchor counts {count} entries but {len(ordered)} remain: the last ones were deleted"]
    return [f"the head anchor ({head[:24]}) does not match the last entry: edited"]


def completion_fields(intent: Mapping[str, Any], outcome: str, **extra: Any) -> dict[str, Any]:
    """The completion entry's fields for ``intent`` (same op, action and version)."""
    return {
        "op": intent["op"],
        "phase": "completion",
        "action": intent["action"],
        "version": intent.get("version"),
        "outcome": outcome,
        **extra,
    }


def table_cell(text: Any, limit: int = 160) -> str:
    """One markdown table cell: single line, cut with an ellipsis, shown as written (pipes
    and any markup escaped: a reason cannot add a link or an image to the history)."""
    return md_text(text, limit)


def _gate_cell(details_json: str) -> str:
    """The gate's reasons and numbers from a completion's ``details`` (JSON), for the table."""
    if not details_json:
        return ""
    try:
        details = json_value(details_json)
    except ValueError:
        return "(unreadable)"
    parts = list(details.get("gate") or [])
    versus = details.get("versus_champion") or {}
    if versus.get("summary") and not any(versus["summary"] in str(p) for p in parts):
        parts.append(versus["summary"])
    return "; ".join(str(p) for p in parts)


def who_cell(entry: Mapping[str, Any], signed: bool) -> str:
    """Who wrote an entry and what vouches for it: a checked signature, the tracking
    server's authentication, or nothing."""
    authenticated = str(entry.get("identity", "")).startswith("authenticated")
    if signed and entry.get("signature"):
        return f"{entry.get('by')} (signed)"
    return f"{entry.get('by')} (unsigned, " + ("authenticated)" if authenticated else "not verified)")


def history_rows(report: LedgerReport, details: Mapping[str, str]) -> list[dict[str, str]]:
    """One row per operation (intent and completion read together) and per note, oldest
    first. ``details`` maps an entry key to its full ``details`` text (the gate's numbers)."""
    completions = {e["op"]: e for e in report.entries if e.get("phase") == "completion"}
    rows = []
    for e in report.entries:
        if e.get("phase") == "completion":
            continue
        done = completions.get(e["op"])
        if e.get("phase") == "intent":
            outcome = "interrupted: no completion yet" if done is None else str(done.get("outcome"))
            if done is not None and done.get("recovered"):
                outcome += f" (completed later by {done.get('by')})"
        else:
            outcome = "requested " + str(e.get("requested")) if e.get("action") == "request" else "recorded"
            if e.get("action") == "canary-fallback":
                outcome = f"all traffic back to champion v{e.get('champion_before')}"
        rows.append(
            {
                "when": str(e.get("at", ""))[:19].replace("T", " "),
                "who": who_cell(e, report.signed),
                "action": str(e.get("action")) + (" (forced)" if e.get("force") else ""),
                "version": f"v{e['version']}" if e.get("version") else "",
                "outcome": outcome,
                "reason": str(e.get("reason", "")),
                "gate": _gate_cell(details.get(done["key"], "")) if done is not None else "",
            }
        )
    return rows


DESCRIPTION_LIMIT = 5000  # MLflow's description columns (registered model and version) on PostgreSQL/MySQL
HISTORY_COLUMNS = ("when", "who", "action", "version", "outcome", "reason", "gate")


def history_table(rows: list[dict[str, str]], columns: tuple[str, ...], budget: int, see: str) -> list[str]:
    """A markdown table of ``rows`` (newest first) in at most ``budget`` characters: the
    oldest rows that do not fit are left out, and a line says how many and where they are."""
    header = [
        "| " + " | ".join("when (UTC)" if c == "when" else c for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    body: list[str] = []
    used = sum(len(line) + 1 for line in header) + 120  # room for the note on what was left out
    for r in reversed(rows):
        line = "| " + " | ".join(table_cell(r[c]) for c in columns) + " |"
        if used + len(line) + 1 > budget:
            break
        body.append(line)
        used += len(line) + 1
    left_out = len(rows) - len(body)
    note = ["", f"{left_out} older entries are not shown here: {see}."] if left_out else []
    return header + body + note


def history_markdown(name: str, report: LedgerReport, details: Mapping[str, str]) -> str:
    """The registered model's description: the approval history as a table, newest first,
    with any problem ``verify`` found (an alias moved or an entry edited outside thaw),
    within MLflow's description limit."""
    lines = [
        f"# {name}: approval history",
        "",
        f"Champion by the ledger: **{_v(report.champion)}**. Written by thaw on every ledger entry "
        f"({len(report.entries)} entries); this text is a view, the record is the hash-chained "
        f"`thaw.ledger.*` tags (`thaw ledger {name} --verify`), copied as JSON under `ledger/` in the "
        "artifacts of the version's run where the writer may write there.",
        "",
    ]
    if report.problems:
        lines += [
            "> **WARNING: the ledger does not verify.** Something outside thaw changed the record or the aliases:",
            *[f"> - {table_cell(p, 300)}" for p in report.problems[:5]],
            *([f"> - and {len(report.problems) - 5} more"] if len(report.problems) > 5 else []),
            "",
        ]
    budget = DESCRIPTION_LIMIT - sum(len(line) + 1 for line in lines)
    lines += history_table(history_rows(report, details), HISTORY_COLUMNS, budget, f"`thaw ledger {name}`")
    return "\n".join(lines) + "\n"
