"""The README and the docs site: a first visit's page that points into one page per
capability, and every command they name exists (make targets, console scripts, modules)."""

from __future__ import annotations

import re

import yaml
from helpers.common import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"


def pages() -> dict[str, str]:
    """README.md and every docs page, with the package READMEs the pages include."""
    texts = {"README.md": README.read_text()}
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for included in re.findall(r'^--8<-- "([^":]+)', text, re.M):
            text += "\n" + (REPO / included).read_text()
        texts[f"docs/{page.name}"] = text
    return texts


def code_of(text: str) -> str:
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text))


def test_the_readme_is_a_first_visit_that_links_every_capability_page():
    readme = README.read_text()
    shown = [line for line in readme.splitlines() if not line.startswith("<!-- --8<-- [")]  # snippet markers
    assert len(shown) <= 200
    assert "make demo" in readme and "make test" in readme
    linked = set(re.findall(r"\]\(docs/([a-z]+\.md)\)", readme))
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    in_nav = set(re.findall(r"([a-z]+\.md)", str(nav)))
    on_disk = {p.name for p in DOCS.glob("*.md")}
    assert in_nav == on_disk, "every page in docs/ is in mkdocs.yml's nav, and nothing else"
    assert linked == on_disk, on_disk - linked
    index = (DOCS / "index.md").read_text()
    assert set(re.findall(r"\]\(([a-z]+\.md)\)", index)) == on_disk - {"index.md"}


def test_every_command_the_pages_name_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):.*## ", makefile, re.M))
    section = (REPO / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    scripts = set(re.findall(r"^([a-z-]+) = ", section, re.M))
    named_targets, named_scripts, modules = set(), set(), set()
    for text in pages().values():
        code = code_of(text)
        named_targets |= set(re.findall(r"(?:^|\s)make ([a-z][a-z-]*)", code, re.M))
        named_scripts |= set(re.findall(r"(?:^|\s)(engram-[a-z]+)", code, re.M))
        modules |= set(re.findall(r"python -m (engram_[a-z_.]+)", code))
    assert {"demo", "test", "test-fast", "docs", "lr-find", "sweep", "capacity", "localize"} <= named_targets
    assert named_targets <= targets, named_targets - targets
    assert named_scripts and named_scripts <= scripts, named_scripts - scripts
    for module in modules:
        path = REPO / module.replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module


def test_the_tuning_pages_grid_file_loads(tmp_path):
    from engram_run.tuning.sweep import expand, load_grid_file

    snippet = (DOCS / "tuning.md").read_text().split("# my_sweep.yml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_sweep.yml").write_text(snippet)
    points = expand(load_grid_file(tmp_path / "my_sweep.yml"))
    assert [(p["learning_rate"], p["lora_r"]) for p in points] == [(1e-4, 16), (1e-4, 64), (3e-4, 16), (3e-4, 64)]


def test_pages_include_other_files_by_named_section_not_line_numbers():
    import re

    for page in sorted((REPO / "docs").glob("*.md")):
        for line in page.read_text().splitlines():
            if line.startswith("--8<--"):
                assert re.fullmatch(r'--8<-- "[\w./-]+:[a-z][\w-]*"', line), f"{page.name}: {line}"
