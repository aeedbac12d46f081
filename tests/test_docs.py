"""The README documents every setting (datasette's habit: docs that cannot drift)."""

from __future__ import annotations

from pathlib import Path

from plenary.settings import describe_settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    missing = []
    for name, default, _ in describe_settings():
        row = f"| `{name}` | `{default}` |"
        if row not in README:
            missing.append(row)
    assert not missing, "README settings table lacks: " + ", ".join(missing)


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
