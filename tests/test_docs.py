"""The README stays short, its reference lives in docs/, and every link resolves.

Links are checked as GitHub renders them: a relative link must name an existing file,
and a ``#anchor`` must be the slug of a heading of the page it points to.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250

# The `## ` and `### ` headings of the 942-line README that docs/ replaced (its last
# commit before the move: `git show fe11511:README.md`). Each must still be a heading of
# README.md or a docs page, under the same words or under the new ones named here.
OLD_README_HEADINGS = [
    "Pipeline stages",
    "Data stage: `src/split_data.py`",
    "Sources",
    "Implicit feedback",
    "Splits",
    "Seed and data directory",
    "Outputs",
    "Errors",
    "Tuning stage: `src/hyperparameter_tuning.py`",
    "Search spaces",
    "Trials",
    "Studies, resuming and watching live",
    "Scale out: several workers on PostgreSQL",
    "What MLflow records",
    "The output file",
    "Several objectives",
    "Training stage: `src/model_training.py`",
    "Evaluation stage: `src/evaluate_model.py`",
    "Running through MLflow",
    "The MLflow UI",
    "Repository layout",
    "Metrics (`rectune.metrics`)",
    "Models (`rectune.models`)",
    "OpenBLAS threads",
]
RENAMED_HEADINGS = {
    # rectune.metrics became rectune.evaluation; the page is about the metrics.
    "Metrics (`rectune.metrics`)": "Metrics",
}

LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The page without its code blocks and code spans, where links are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def headings(path: Path) -> list[str]:
    return [match.group(2) for match in HEADING.finditer(FENCE.sub("", path.read_text()))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but hyphens and spaces
    dropped (underscores are word characters and stay), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(path):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(root)}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(root)}")
    return broken


def test_readme_is_short():
    count = len(README.read_text().splitlines())
    assert count <= MAX_README_LINES, (
        f"README.md has {count} lines (at most {MAX_README_LINES}); "
        "move reference material to a page in docs/"
    )


@pytest.mark.parametrize("path", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_links_resolve(path):
    assert broken_links(path) == []


def test_every_old_readme_section_has_a_home():
    everywhere = {heading for path in pages() for heading in headings(path)}
    homeless = [
        old for old in OLD_README_HEADINGS if RENAMED_HEADINGS.get(old, old) not in everywhere
    ]
    assert homeless == [], "old README sections without a heading in README.md or docs/"


def test_docs_are_linked_from_the_readme():
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in LINK.findall(prose(README.read_text()))
    }
    unlinked = [str(path.relative_to(ROOT)) for path in pages()[1:] if path.resolve() not in linked]
    assert unlinked == [], "docs pages the README does not link to"


def test_slug_follows_github():
    assert slug("Scale out: several workers on PostgreSQL") == (
        "scale-out-several-workers-on-postgresql"
    )
    assert slug("Models (`rectune.models`)") == "models-rectunemodels"
    assert slug("Evaluation stage: `src/evaluate_model.py`") == (
        "evaluation-stage-srcevaluate_modelpy"
    )
    assert slug("Iteration sharing (searched, categorical `iterations`)") == (
        "iteration-sharing-searched-categorical-iterations"
    )


def test_the_checks_catch_what_they_check(tmp_path):
    """A broken file link, a broken anchor and a missing section are each reported."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: `x.py`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Here\n\n"
        "[ok](other.md#a-section-xpy) [ok](#here) [ok](https://example.com/#nowhere)\n"
        "`[not a link](missing.md)`\n\n```\n[not a link](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#no-such) [bad here](#there)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no file missing.md",
        "other.md#no-such: no heading #no-such in other.md",
        "#there: no heading #there in page.md",
    ]
