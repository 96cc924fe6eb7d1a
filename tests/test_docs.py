"""The documentation states what the code does."""

from pathlib import Path

from dsft.data.codes import CODES, markdown_table

ROOT = Path(__file__).parent.parent


def test_docs_list_every_finding_code_as_the_code_defines_it():
    assert markdown_table() in (ROOT / "docs" / "data.md").read_text()
    assert len(CODES) == markdown_table().count("\n") - 1


def test_readme_first_screen_gives_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:12]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
