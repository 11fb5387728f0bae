"""The documentation holds together: every relative link in README.md and docs/ points at a file that
exists (and at a heading that exists, for an anchor), and every pinned dependency has its decision
record in docs/decisions.md."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def outside_code(page: Path):
    """(line number, line) of a page's prose: fenced code blocks hold shell and JSON, not links."""
    fenced = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for _, line in outside_code(page) if (m := re.match(r"#+ (.*)", line))}


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for page in PAGES:
        for number, line in outside_code(page):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue  # https:, mailto:
                path, _, anchor = target.partition("#")
                resolved = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(ROOT)}:{number} {target}"
                if not resolved.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    broken.append(f"{where}: no such heading")
    assert broken == []


def test_the_readme_links_every_page_of_the_docs():
    readme = (ROOT / "README.md").read_text()
    unlinked = [page.name for page in PAGES[1:] if f"(docs/{page.name})" not in readme]
    assert unlinked == []


def test_every_dependency_has_a_decision_record():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    names = [re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0) for requirement in pinned]
    headings = " ".join(
        line.lower() for line in (ROOT / "docs" / "decisions.md").read_text().splitlines() if line.startswith("### ")
    )
    assert len(names) > 30
    assert [name for name in names if name.lower() not in headings] == []


def test_every_decision_record_has_a_date_context_decision_and_consequences():
    records = re.split(r"^### ", (ROOT / "docs" / "decisions.md").read_text(), flags=re.M)[1:]
    assert len(records) > 50
    incomplete = [
        record.splitlines()[0]
        for record in records
        if not all(f"- **{part}.**" in record for part in ("Date", "Context", "Decision", "Consequences"))
        or not re.search(r"- \*\*Date\.\*\* \d{4}-\d{2}-\d{2}", record)
    ]
    assert incomplete == []
