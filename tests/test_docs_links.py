"""Relative links and pictures in README.md, docs/*.md and benchmarks/README.md point to files
that exist, and their #anchors to headings that exist (as a code host makes anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, link targets and punctuation dropped
    (``-`` and ``_`` kept), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(prose(page.read_text(encoding="utf-8")))]


def test_pages_exist_and_have_links():
    assert (ROOT / "docs").is_dir() and len(PAGES) > 5
    assert sum(len(links(p)) for p in PAGES) > 50


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: " + "; ".join(broken)


def test_slugs_follow_the_code_host():
    assert slug("Progressive GAN (`impasto gan train --arch pggan`)") == \
        "progressive-gan-impasto-gan-train---arch-pggan"
    assert slug("L-BFGS variants (`nst_optim.py`)") == "l-bfgs-variants-nst_optimpy"
    assert slug("Sources (REAL and FAKE)") == "sources-real-and-fake"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](missing.md) `[code](nowhere.md)`\n"
                    "```\n[fenced](nowhere.md)\n```\n", encoding="utf-8")
    assert links(page) == ["#title", "missing.md"]
    assert anchors(page) == {"title"}


def python_imports(text: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``from M import a, b`` in the ```python blocks of ``text``."""
    out = []
    for block in re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        block = re.sub(r"\(([^)]*)\)", lambda m: m.group(1).replace("\n", " "), block)
        for m in re.finditer(r"^from ([\w.]+) import ([^\n#]+)", block, flags=re.M):
            names = [n.strip().split(" as ")[0] for n in m.group(2).split(",") if n.strip()]
            out.append((m.group(1), names))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_imports_in_the_docs_resolve(page):
    """The names the docs' Python examples import exist (the code moves; the docs follow)."""
    import importlib

    missing = []
    for module, names in python_imports(page.read_text(encoding="utf-8")):
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            missing.append(f"{module} ({e})")
            continue
        missing += [f"{module}.{n}" for n in names if not hasattr(mod, n)]
    assert not missing, f"{page.relative_to(ROOT)}: " + ", ".join(missing)


def test_python_imports_are_found():
    text = "```python\nfrom a.b import (c,\n    d)\nfrom e import f as g  # x\n```\n"
    assert python_imports(text) == [("a.b", ["c", "d"]), ("e", ["f"])]


def shell_commands(text: str) -> list[list[str]]:
    """The ``impasto`` argument lists of the ```sh blocks of ``text`` (``impasto ...`` and
    ``... -m impasto.cli ...`` lines, continuations joined, comments dropped)."""
    import shlex

    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            toks = shlex.split(line, comments=True)
            if "impasto.cli" in toks:
                out.append(toks[toks.index("impasto.cli") + 1 :])
            elif toks[:1] == ["impasto"]:
                out.append(toks[1:])
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_parse(page):
    """Every ``impasto`` command in the docs' shell examples is accepted by the current parser
    (parsed only, not run)."""
    from impasto.cli import build_parser
    from impasto.errors import InputError

    bad = []
    for argv in shell_commands(page.read_text(encoding="utf-8")):
        try:
            build_parser().parse_args(argv)
        except (InputError, SystemExit) as e:
            bad.append(f"impasto {' '.join(argv)}: {e}")
    assert not bad, f"{page.relative_to(ROOT)}:\n" + "\n".join(bad)


def test_all_commands_are_checked():
    n = sum(len(shell_commands(p.read_text(encoding="utf-8"))) for p in PAGES)
    assert n > 50
    assert shell_commands("```sh\nimpasto gan sample runs/x -n 4  # c\n```\n") == [
        ["gan", "sample", "runs/x", "-n", "4"]]
