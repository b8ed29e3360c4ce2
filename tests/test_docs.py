"""Tests of the repository's citations of docs/reference.md.

Comments, docstrings, configs and tests cite the published facts they rely on
as ``docs/reference.md §N`` (or a range, ``§4-5``). Every cited section must
exist, and nothing outside docs/ may point at notes that live outside the
repository. Pure standard library: this runs without torch.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / 'docs' / 'reference.md'

# a section heading of docs/reference.md: "## 3. Layer-wise ..."
HEADING = re.compile(r'^## (\d+)\. \S', re.MULTILINE)
# a citation, possibly wrapped onto the next line: "docs/reference.md §3",
# "docs/reference.md §4-5"
CITATION = re.compile(r'docs/reference\.md\s+§(\d+)(?:\s*-\s*§?(\d+))?')
# notes of the project's authors that users of the repository do not have;
# case-sensitive, so docs/reference.md itself does not match
OUTSIDE_NOTES = re.compile(r'\b(?:REFERENCE|ENVIRONMENT)\.md\b')


def tracked_files() -> list[Path]:
    """The files git tracks in this checkout (text or not)."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout: no list of tracked files')
    return [ROOT / name for name in out.decode().split('\0') if name]


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode('utf-8', errors='ignore')
    except FileNotFoundError:  # deleted in the work tree, not yet in git
        return ''


def sections() -> set[int]:
    return {int(n) for n in HEADING.findall(REFERENCE.read_text())}


def cited_sections(text: str) -> list[int]:
    cited = []
    for match in CITATION.finditer(text):
        first = int(match.group(1))
        last = int(match.group(2) or first)
        cited.extend(range(first, last + 1))
    return cited


def test_reference_sections_are_numbered_in_order():
    numbers = [int(n) for n in HEADING.findall(REFERENCE.read_text())]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_citation_pattern():
    assert cited_sections('see docs/reference.md §3.') == [3]
    assert cited_sections('(docs/reference.md §4-5)') == [4, 5]
    assert cited_sections('docs/reference.md\n    §1). Layer') == [1]
    assert cited_sections('docs/reference.md, the page') == []
    assert OUTSIDE_NOTES.search('docs/reference.md') is None
    # spelled in two parts, so that this file passes its own check
    assert OUTSIDE_NOTES.search('(ENVIRONMENT' + '.md)') is not None


def test_no_citation_of_notes_outside_the_repository():
    found = []
    for path in tracked_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith('docs/'):
            continue
        for number, line in enumerate(read_text(path).splitlines(), 1):
            if OUTSIDE_NOTES.search(line):
                found.append(f'{rel}:{number}: {line.strip()}')
    assert not found, (
        'cite docs/reference.md §N instead of notes users do not have:\n'
        + '\n'.join(found))


def test_every_citation_names_an_existing_section():
    known = sections()
    citing = 0
    bad = []
    for path in tracked_files():
        cited = cited_sections(read_text(path))
        citing += bool(cited)
        rel = path.relative_to(ROOT).as_posix()
        bad += [f'{rel}: §{n}' for n in cited if n not in known]
    assert not bad, (f'sections {sorted(known)} exist; cited but missing:\n'
                     + '\n'.join(bad))
    # the code does cite the page; a pattern that matched nothing would
    # pass the check above vacuously
    assert citing >= 10, citing
