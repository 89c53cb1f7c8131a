"""The README stays true: its example runs and its commands are well formed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _block_after(heading: str, language: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no {language} block after {heading!r}"
    return match.group(1)


def test_the_room_example_runs() -> None:
    code = _block_after("## A room in twenty lines", "python")
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ENDED ")


def test_commands_between_markers() -> None:
    text = README.read_text(encoding="utf-8")
    for name, expected in (
        ("demo-command", "plyr-rooms demo"),
        ("test-command", "pytest"),
    ):
        block = text.split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0]
        assert expected in block
        assert "python3 -m venv .venv" in block


def test_transition_table_matches_the_code() -> None:
    from plyr_rooms.lifecycle import table_markdown

    assert table_markdown() in README.read_text(encoding="utf-8")
