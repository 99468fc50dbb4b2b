"""Every option of every command says what it does and what its default is, and a
value that can never be right is bad usage (exit 2, one line on stderr)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import _parser, main
from tests.test_cli import SECRETS, one_line, run


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command parser, depth first, with its command words."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def options() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    found = []
    for path, parser in commands(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            found.append((" ".join(path) + " " + (action.option_strings or [action.dest])[0],
                          parser, action))
    return found


OPTIONS = options()


def test_the_walk_finds_every_command_and_option() -> None:
    names = {name for name, _, _ in OPTIONS}
    # A sample from each level, so the walk itself cannot silently find nothing.
    assert {"serve --port", "serve --workers", "shop install --timezone",
            "shop install domain", "worker --concurrency", "reminders run --limit",
            "beat --schedule", "demo --no-serve"} <= names
    assert len(names) == len(OPTIONS) >= 15


@pytest.mark.parametrize(("name", "parser", "action"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_every_option_has_a_help_line_with_its_default(
        name: str, parser: argparse.ArgumentParser, action: argparse.Action) -> None:
    assert action.help and action.help is not argparse.SUPPRESS, f"{name} has no help"
    text = parser._get_formatter()._expand_help(action)
    assert "\n" not in text
    if action.required or not action.option_strings:
        assert "(required)" in text, f"{name}: {text!r} should say it is required"
        return
    assert "(default: " in text, f"{name}: {text!r} should state its default"
    if action.default not in (None, False):
        # The default shown is the one argparse uses (%(default)s, never retyped).
        assert f"(default: {action.default})" in text, f"{name}: {text!r}"


def test_the_full_help_of_every_command_renders(capsys: pytest.CaptureFixture[str]) -> None:
    for path, _ in commands(_parser()):
        assert main([*path, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: consultbook")


@pytest.mark.parametrize("args", [
    ["shop", "install", "alpha.myshopify.com", "--timezone", "Mars/Base"],
    ["shop", "install", "alpha.myshopify.com", "--timezone", "europe/berlin"],
    ["shop", "install", "alpha.myshopify.com", "--timezone", "../../etc/passwd"],
    ["shop", "install", "alpha.myshopify.com", "--timezone", ""],
    ["shop", "install", "alpha.myshopify.com", "--timezone", "Europe/Berlin\x00"],
    ["shop", "install", "evil.example.com", "--timezone", "UTC"],
    ["serve", "--port", "0"],
    ["serve", "--port", "65536"],
    ["serve", "--port", "\uff18\uff10"],  # fullwidth digits: int() takes them
    ["serve", "--port", " 80"],
    ["serve", "--workers", "0"],
    ["worker", "--concurrency", "-1"],
    ["worker", "--loglevel", "loud"],
    ["reminders", "run", "--limit", "0"],
])
def test_bad_values_are_bad_usage(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    line = one_line(err)
    assert line.startswith("consultbook ")
    assert "Traceback" not in err


def test_a_bad_timezone_is_exit_2_before_anything_is_opened(tmp_path: Path) -> None:
    # No database exists and none is created: the value is refused while parsing.
    url = f"sqlite:///{tmp_path}/never.db"
    r = run(["shop", "install", "alpha.myshopify.com", "--timezone", "Mars/Base"], tmp_path,
            CONSULTBOOK_DATABASE_URL=url, **SECRETS)
    assert r.returncode == 2
    assert "'Mars/Base' is not an IANA timezone" in one_line(r.stderr)
    assert "--timezone" in r.stderr
    assert not (tmp_path / "never.db").exists()
