"""References to documents resolve: every ``*.md`` name and ``docs/...`` path in the
repository's text files names a file of the repository, and every section (``§N``, ``§N.M``)
and equation (``eq. (N)``) cited from the method document exists there.

The method document is docs/METHOD.md; its sections are its numbered headings (``## 5. ...``,
``### 9.3 ...``) and its equations the ``(N)`` labels that end lines of its code blocks. A
section sign outside such a citation must cite the paper (``paper §3``) or, inside the
method document itself, one of its own sections.
"""

import re
import subprocess
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parent.parent
METHOD = "docs/METHOD.md"
TEXT_SUFFIXES = (".py", ".sh", ".md", ".txt")

# names that files of the repository write at run time, not documents they cite
GENERATED = {
    "results.md": "the tables the comparison (python -m varattn_experiments converge) writes into its ROOT",
    "dynamics.md": "the early-dynamics report's default output (docs/), once runs exist",
}

MD_NAME = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
DOCS_PATH = re.compile(r"(?<![\w./-])(docs/(?:[\w-][\w.-]*/)*[\w-][\w.-]*\.\w+)")  # a file: with an extension
SECTION = r"§\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?"
EQUATION = r"eqs?\. \(\d+\)(?:-\(\d+\))?"
# "docs/METHOD.md §3-4", "docs/METHOD.md §6, §8", "docs/METHOD.md §3, eqs. (1)-(5)", "docs/METHOD.md eq. (17), §9.5"
CITATION = re.compile(rf"METHOD\.md((?:,? (?:{SECTION}|{EQUATION}))+)")
ANY_SECTION = re.compile(SECTION)
PAPER_SECTION = re.compile(rf"paper(?:'s)? {SECTION}")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)?)[. ]", re.M)
EQUATION_LABEL = re.compile(r"\((\d+)\)\s*$", re.M)


def repository_files() -> List[str]:
    """Tracked files and untracked ones git does not ignore (a checkout's contents)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [path for path in out.splitlines() if (REPO / path).is_file()]


def text_files(files: List[str]) -> List[str]:
    return [path for path in files if path.endswith(TEXT_SUFFIXES) or Path(path).name == "Makefile"]


def _numbers(span: str) -> List[str]:
    """``"3-4"`` -> ``["3", "4"]``; ``"9.1-9.2"`` -> ``["9.1", "9.2"]``; ``"5"`` -> ``["5"]``."""
    first, _, last = span.partition("-")
    if not last:
        return [first]
    if "." in first:
        major, minor = first.split(".")
        end = last.split(".")[-1]
        return [f"{major}.{i}" for i in range(int(minor), int(end) + 1)]
    return [str(i) for i in range(int(first), int(last) + 1)]


def method_anchors(text: str):
    """The section numbers and equation numbers the method document defines."""
    sections = set(HEADING.findall(text))
    blocks = "\n".join(re.findall(r"```\n(.*?)```", text, re.S))
    equations = set(EQUATION_LABEL.findall(blocks))
    return sections, equations


def problems_in(path: str, text: str, files: Set[str], sections: Set[str], equations: Set[str]) -> List[str]:
    """Every reference in ``text`` (the file ``path``) that does not resolve."""
    found = []
    here = Path(path).parent

    def exists(name: str) -> bool:
        return name in files or (here / name).as_posix() in files

    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        scrubbed = re.sub(r"\w+://\S+", "", line)  # URLs name other sites' files
        for name in MD_NAME.findall(scrubbed):
            if not exists(name) and Path(name).name not in GENERATED:
                found.append(f"{where}: {name} is not a file of the repository")
        for name in DOCS_PATH.findall(scrubbed):
            name = name.rstrip(".")
            if not exists(name) and Path(name).name not in GENERATED:
                found.append(f"{where}: {name} is not a file of the repository")
        cited = set()
        for match in CITATION.finditer(scrubbed):
            cited.update(range(match.start(1), match.end(1)))
            for span in re.findall(r"§(\S+?)(?=,|$|\s)", match.group(1)):
                for number in _numbers(span):
                    if number not in sections:
                        found.append(f"{where}: {METHOD} has no section {number}")
            for eq in re.findall(r"\((\d+)\)(?:-\((\d+)\))?", match.group(1)):
                for number in (n for n in eq if n):
                    if number not in equations:
                        found.append(f"{where}: {METHOD} has no equation ({number})")
        paper = set()
        for match in PAPER_SECTION.finditer(scrubbed):
            paper.update(range(match.start(), match.end()))
        for match in ANY_SECTION.finditer(scrubbed):
            if match.start() in cited or match.start() in paper:
                continue
            if path == METHOD:
                for number in _numbers(match.group()[1:]):
                    if number not in sections:
                        found.append(f"{where}: {METHOD} cites its own missing section {number}")
            else:
                found.append(f"{where}: {match.group()} cites neither {METHOD} nor the paper")
    return found


def test_method_document_has_the_cited_structure():
    text = (REPO / METHOD).read_text(encoding="utf-8")
    sections, equations = method_anchors(text)
    assert {str(i) for i in range(1, 10)} <= sections
    assert {f"9.{i}" for i in range(1, 11)} <= sections
    assert equations == {str(i) for i in range(1, len(equations) + 1)}, "equations numbered 1, 2, ... without gaps"


def test_every_document_reference_resolves():
    files = repository_files()
    sections, equations = method_anchors((REPO / METHOD).read_text(encoding="utf-8"))
    file_set = set(files)
    found: Dict[str, List[str]] = {}
    for path in text_files(files):
        text = (REPO / path).read_text(encoding="utf-8", errors="replace")
        problems = problems_in(path, text, file_set, sections, equations)
        if problems:
            found[path] = problems
    assert not found, "unresolved references:\n" + "\n".join(p for ps in found.values() for p in ps)


def test_the_checker_rejects_broken_references():
    """The checker itself: bare or misplaced citations fail, good ones pass."""
    method, sec, md = "METHOD" + ".md", "\u00a7", ".md"  # spelled apart: this file cites nothing
    files = {"README.md", "docs/" + method, "docs/dynamics-libreoffice.png"}
    sections, equations = {"3", "4", "6", "9", "9.3"}, {"1", "2"}

    def problems(line, path="var_attn_plugin/x.py"):
        return problems_in(path, line, files, sections, equations)

    good = [f"docs/{method} {sec}6", f"(docs/{method} {sec}3-4)", f"docs/{method} {sec}3, eq. (2)",
            f"docs/{method} {sec}6, {sec}9.3", f"docs/{method} eqs. (1)-(2)", f"paper {sec}3.1", "see README.md",
            "docs/dynamics-libreoffice.png.", f"a table in $ROOT/results{md}", f"https://example.org/NOTES{md}"]
    for line in good:
        assert problems(line) == [], line
    bad = [f"{method} {sec}6", f"docs/{method} {sec}7", f"docs/{method} {sec}3-5", f"docs/{method} eq. (3)",
           f"docs/{method} {sec}9.4", f"docs/ENVIRONMENT{md}", f"NOTES{md}", f"as in {sec}6",
           f"docs/{method} {sec}6, {sec}8"]
    for line in bad:
        assert problems(line), line
    assert problems(f"{sec}9.3 and {sec}5", path="docs/" + method) == [f"docs/{method}:1: docs/{method} cites its own "
                                                               "missing section 5"]
