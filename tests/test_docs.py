"""The documentation stays short, linked and sourced: the README at most 10 KiB, every relative
link (and its #anchor) resolves, and every measurement names its machine, commit and date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_LIMIT = 10_240
MEASUREMENTS = ROOT / "docs" / "measurements"
PAGES = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file: lower case, punctuation dropped, spaces to
    hyphens, repeated headings numbered."""
    seen: dict[str, int] = {}
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no such heading)")
    return broken


def test_the_readme_is_at_most_10_kib():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_something_that_exists(page):
    assert broken_links(page) == []


def test_the_pages_are_found_and_link_somewhere():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "docs/schema.md", "docs/summary.md"} <= names
    assert any(LINK.search(p.read_text(encoding="utf-8")) for p in PAGES)


def test_every_measurement_names_its_machine_commit_and_date():
    files = sorted(p for p in MEASUREMENTS.rglob("*") if p.is_file())
    assert files, "docs/measurements/ is empty"
    for path in files:
        assert path.suffix == ".md", f"{path.name}: measurements are Markdown"
        text = path.read_text(encoding="utf-8")
        assert re.search(r"^- machine: \S", text, re.M), f"{path.name}: no '- machine:' line"
        assert re.search(r"^- commit: .*\b[0-9a-f]{7,40}\b", text, re.M), \
            f"{path.name}: no '- commit:' line with a commit hash"
        assert re.search(r"^- date: .*\b20\d\d-\d\d-\d\d\b", text, re.M), \
            f"{path.name}: no '- date:' line with a date"
