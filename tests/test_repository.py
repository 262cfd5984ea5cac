"""The repository itself: no paths of one machine, the specs it cites inside it, a licence and a
citation file that agree with pyproject.toml and the papers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.paths import ROOT, SHARED

# An absolute path on some machine that ends in shared/papers or shared/datasets.
MACHINE_PATH = re.compile(r"(?<![\w.])/[\w.-]+(?:/[\w.-]+)*/shared/(?:papers|datasets)\b")


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    names = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file() and not path.is_symlink() and b"\0" not in path.read_bytes()[:4096]:
            names.append(name)
    return names


def machine_paths(name: str) -> list[str]:
    text = (ROOT / name).read_text(errors="replace")
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def test_no_tracked_file_names_a_machine_path():
    found = {name: machine_paths(name) for name in tracked_text_files()}
    assert {k: v for k, v in found.items() if v} == {}


def test_specs_the_code_cites_live_in_the_repository():
    assert (ROOT / "docs/SPECS.md").is_file()
    for name in tracked_text_files():
        if name == "tests/test_repository.py":
            continue
        for line in (ROOT / name).read_text(errors="replace").splitlines():
            if "SPECS.md" in line:
                assert re.search(
                    r"(?:^|[^\w/.])(?:\.\./)?docs/SPECS\.md|\(SPECS\.md\)", line
                ) or name.startswith("docs/"), f"{name}: {line.strip()}"


def test_license_and_citation_agree_with_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib needs Python 3.11)
    project = {
        key: re.search(rf"^{key} = (.+)$", pyproject, re.MULTILINE).group(1)
        for key in ("version", "license")
    }
    assert project["license"] == '{ text = "MIT" }'
    project["version"] = project["version"].strip('"')
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["license"] == "MIT" and cff["version"] == project["version"]
    assert cff["message"] and cff["authors"]
    years = {ref["title"].split(":")[0]: ref["year"] for ref in cff["references"]}
    assert years == {"DSOD": 2017, "ScratchDet": 2019}
    for ref in cff["references"]:
        assert ref["type"] == "conference-paper" and ref["authors"] and ref["conference"]["name"]


@pytest.mark.skipif(not (SHARED / "papers").is_dir(), reason="no ../shared/papers beside the repo")
@pytest.mark.parametrize("paper", ["dsod-iccv2017.txt", "scratchdet-cvpr2019.txt"])
def test_citation_titles_and_authors_are_those_of_the_papers(paper):
    lines = (SHARED / "papers" / paper).read_text().splitlines()
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    [ref] = [r for r in cff["references"] if r["title"] == lines[0].strip()]
    byline = next(line for line in lines[1:4] if line.strip())
    for author in ref["authors"]:
        assert f"{author['given-names']} {author['family-names']}" in byline


def test_every_package_file_the_docs_name_exists():
    """A renamed module leaves no stale path in the Markdown docs."""
    named = re.compile(r"\bscratchdet/[\w/]+\.py\b")
    stale = {}
    for name in tracked_text_files():
        if name.endswith(".md"):
            text = (ROOT / name).read_text(errors="replace")
            missing = sorted({m for m in named.findall(text) if not (ROOT / m).is_file()})
            if missing:
                stale[name] = missing
    assert stale == {}


def _package_modules() -> list[Path]:
    return sorted(p for p in (ROOT / "scratchdet").rglob("*.py") if p.name != "__main__.py")


def test_every_module_declares_its_public_names():
    """`__all__` in every module of the package, naming only what the module has (defines,
    re-exports or imports on first use), and never a private name."""
    import ast
    import importlib

    problems = []
    for path in _package_modules():
        where = path.relative_to(ROOT)
        tree = ast.parse(path.read_text())
        if not any(
            isinstance(n, ast.Assign)
            and any(getattr(t, "id", None) == "__all__" for t in n.targets)
            for n in tree.body
        ):
            problems.append(f"{where}: no __all__")
            continue
        dotted = ".".join(where.with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(dotted)
        for name in module.__all__:
            if name.startswith("_") and name != "__version__":
                problems.append(f"{where}: private name {name} in __all__")
            elif not hasattr(module, name):
                problems.append(f"{where}: {name} in __all__ is not defined")
    assert problems == []


def test_no_module_imports_a_private_name_of_another():
    import ast

    found = []
    for path in _package_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                found += [
                    f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert found == []
