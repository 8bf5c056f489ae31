"""Rewrite README's demo results block from a run's outputs, so README's figures are the run's
(and its table of contents from its headings).

    .venv/bin/python scripts/readme_results.py            # after `make demo`: results/demo
    .venv/bin/python scripts/readme_results.py --check    # exit 1 when README differs from the run
    .venv/bin/python scripts/readme_results.py --toc-only # the table of contents alone

The block between the two ``readme-results`` markers becomes: the commit the run's code was at,
``comparison/protocols.md`` verbatim (every protocol side by side), and the 1:2 matching of each
generative method's faces (``generated/<method>/report.json``). The commit is the last one that
changed what a run runs: a commit of documentation (README.md, CHANGELOG.md, docs/), tests or
benchmarks alone, such as one that refreshes this block, leaves it as it was. A run from a checkout with uncommitted changes names
no commit; the script refuses it unless ``--dirty-ok``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- readme-results:begin (scripts/readme_results.py writes this block; do not edit) -->"
END = "<!-- readme-results:end -->"
TOC_BEGIN, TOC_END = "<!-- toc:begin -->", "<!-- toc:end -->"
DOCS = (":(exclude)README.md", ":(exclude)CHANGELOG.md", ":(exclude)docs", ":(exclude)tests", ":(exclude)benchmarks")


class ResultsError(Exception):
    """The run's outputs cannot fill the block (missing, from several versions, or from a dirty tree)."""


def run_commit(folder: Path, dirty_ok: bool) -> str:
    """The code commit every evaluation of the run records (one, or :class:`ResultsError`)."""
    found = {json.loads(p.read_text())["meta"]["code_version"]["git"] for p in folder.glob("evaluation/*/*.json")}
    if len(found) != 1:
        raise ResultsError(f"{folder}/evaluation/*/*.json record {len(found)} code versions "
                           f"({', '.join(sorted(found)) or 'no results'}): run `make demo` once on one commit")
    git = found.pop()
    if git.endswith("-dirty"):
        if not dirty_ok:
            raise ResultsError(f"the run's code had uncommitted changes ({git}): commit, re-run, or pass --dirty-ok")
        return git
    out = subprocess.run(["git", "log", "-1", "--format=%h", git, "--", ".", *DOCS], cwd=REPO,
                         capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise ResultsError(f"commit {git} of the run is not in this repository's history")
    return out.stdout.strip()


def generated_lines(folder: Path) -> list[str]:
    """One line per generative method: 1:2 matching with a generated face as the probe."""
    lines = []
    for path in sorted(folder.glob("generated/*/report.json")):
        rep = json.loads(path.read_text())
        cells = [f"{s} {100 * r['accuracy']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"
                 for s, r in rep["matching_1v2"].items() if isinstance(r, dict) and r.get("available")]
        lines.append(f"- {rep['method']}: a face generated from a voice of split `{rep['split']}` against the "
                     f"speaker's real face and another's, 1:2 matching by its judge network: {'; '.join(cells)} "
                     f"({rep['counts']['identities']} speakers).")
    return lines


def block(folder: Path, dirty_ok: bool = False) -> str:
    table = folder / "comparison" / "protocols.md"
    if not table.is_file():
        raise ResultsError(f"{table} is missing: run `make demo` first (it needs two protocols or more)")
    commit = run_commit(folder, dirty_ok)
    parts = [BEGIN, "", f"`make demo` at commit `{commit}` (CPU; `{folder.name}/comparison/protocols.md`):", "",
             table.read_text().strip(), ""]
    gen = generated_lines(folder)
    if gen:
        parts += ["Generated faces (`generated/<method>/report.json`):", "", *gen, ""]
    return "\n".join(parts + [END])


def toc(readme: str) -> str:
    """The table of contents of README's ``##`` and ``###`` headings (GitHub's anchors), between its markers."""
    lines, fenced = [TOC_BEGIN], False
    for line in readme.splitlines():
        fenced ^= line.startswith("```")
        level = len(line) - len(line.lstrip("#"))
        if fenced or level not in (2, 3) or not line[level:].startswith(" "):
            continue
        title = line[level:].strip()
        anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        lines.append(f"{'  ' * (level - 2)}- [{title}](#{anchor})")
    return "\n".join(lines + [TOC_END])


def replace_block(text: str, begin: str, end: str, new_block: str) -> str:
    head, sep, rest = text.partition(begin)
    _, sep2, tail = rest.partition(end)
    if not sep or not sep2:
        raise ResultsError(f"README has no such block: put the lines\n{begin}\n{end}\nwhere it goes")
    return head + new_block + tail


def rewrite(readme: str, new_block: str) -> str:
    """README with the results block replaced, then its table of contents made again."""
    text = replace_block(readme, BEGIN, END, new_block)
    return replace_block(text, TOC_BEGIN, TOC_END, toc(text))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(REPO / "results" / "demo"), help="the run's folder (<results>/<dataset>)")
    ap.add_argument("--readme", default=str(REPO / "README.md"))
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when README differs from the run")
    ap.add_argument("--dirty-ok", action="store_true", help="accept a run of uncommitted code (names no commit)")
    ap.add_argument("--toc-only", action="store_true", help="rewrite the table of contents alone (no run needed)")
    a = ap.parse_args(argv)
    readme = Path(a.readme)
    try:
        text = readme.read_text()
        new = (replace_block(text, TOC_BEGIN, TOC_END, toc(text)) if a.toc_only
               else rewrite(text, block(Path(a.results), a.dirty_ok)))
    except (ResultsError, OSError) as exc:
        print(f"readme_results: {exc}", file=sys.stderr)
        return 2
    if new == text:
        print(f"{readme}: up to date" if a.toc_only else f"{readme}: the results block is the run's")
        return 0
    if a.check:
        print(f"{readme}: the results block differs from {a.results}: run scripts/readme_results.py", file=sys.stderr)
        return 1
    readme.write_text(new)
    print(f"{readme}: table of contents rewritten" if a.toc_only else f"{readme}: results block rewritten from {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
