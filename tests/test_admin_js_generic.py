"""The admin page knows no provider by name (issue 10: "``web/`` renders providers it has
never heard of"): every label, field and connect flow comes from the API, so
``web/static/admin.js`` holds no string literal naming a provider, connector or plugin,
and does not mention the built-in providers even in a comment.

The names checked are those the installed plugins register (every kind, every
connector, every plugin's entry-point name) and their labels, so a provider added
later is covered the day it is installed.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.plugins import load_plugins
from tests.conftest import make_config

ADMIN_JS = Path(__file__).resolve().parents[1] / "web/static/admin.js"
# What the brief of this rule names: no special case, not even a comment about one.
BUILT_IN = re.compile(r"google|outlook|caldav|zoom|local|\b(meet|teams|smtp|outbox)\b", re.I)
# After these (or at the start), a "/" begins a regular expression, not a division.
REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}


def string_literals(source: str) -> list[str]:
    """The raw text of every '...', "..." and `...` literal of a JavaScript source
    (comments and regular-expression literals skipped; template ``${}`` parts kept as
    text, which is stricter, not looser)."""
    out: list[str] = []
    i, n, last = 0, len(source), ""
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            i = source.find("\n", i)
            i = n if i < 0 else i
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            assert end >= 0, "unterminated comment"
            i = end + 2
        elif c in "'\"`":
            j = i + 1
            while source[j] != c:
                j += 2 if source[j] == "\\" else 1
            out.append(source[i + 1:j])
            i, last = j + 1, c
        elif c == "/" and last in REGEX_BEFORE:
            j, in_class = i + 1, False
            while in_class or source[j] != "/":
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            i, last = j + 1, "/"
        else:
            if not c.isspace():
                last = c
            i += 1
    return out


def registered_names() -> tuple[set[str], set[str]]:
    """(names, labels) of what the installed plugins register."""
    loaded = load_plugins(make_config("sqlite://"))
    registry = loaded.providers
    names = set(loaded.plugin_names()) - {"core"} | set(registry.connector_names())
    labels: set[str] = set()
    for kind in ("calendar", "video", "mail"):
        for name in registry.names(kind):
            names.add(name)
            cls = registry.get(kind, name)
            if cls is not None and cls.label:
                labels.add(cls.label)
    for name in registry.connector_names():
        connector = registry.connector(name)
        if connector is not None and connector.label:
            labels.add(connector.label)
    return names, labels


def test_the_tokenizer_reads_admin_js() -> None:
    literals = string_literals(ADMIN_JS.read_text(encoding="utf-8"))
    # Sanity: literals on either side of regular expressions and comments are found.
    for expected in ("Connections", "/connections", "Save settings", "aria-describedby"):
        assert expected in literals
    assert string_literals('a = /["\']x/g; b = "it\\"s"; // "no"\n/* "no" */ c = `t`') == [
        'it\\"s', "t"]


def test_admin_js_names_no_provider() -> None:
    source = ADMIN_JS.read_text(encoding="utf-8")
    assert [m.group(0) for m in BUILT_IN.finditer(source)] == []
    names, labels = registered_names()
    assert {"local", "caldav", "zoom", "google", "outlook"} <= names  # installed ones seen
    found = []
    for literal in string_literals(source):
        words = set(re.findall(r"[a-z0-9_]+", literal.lower()))
        found += [(literal, name) for name in names if name.lower() in words]
        found += [(literal, label) for label in labels if label.lower() in literal.lower()]
    assert found == [], "admin.js must take provider names and labels from the API"
