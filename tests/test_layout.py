"""The codebase's shape: who may import whom (the data contract is the one shared module),
modules small enough to read top to bottom, generated task files current."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.common import REPO

PACKAGES = ("engram_data", "engram_eval", "engram_localize", "engram_plugin", "engram_run", "lm_eval_tasks")
# Of our own packages, what each part may import (prefixes); everything else of ours is off limits.
# Shared by all: the data contract, the error convention, atomic output folders.
SHARED = ("engram_data.contract", "engram_data.errors", "engram_data.atomic")
RUN_FILES = "engram_data.run_files"  # what the plugin writes into a run's folder for the runner
ALLOWED = {
    # Evaluation reads datasets through the contract only, and imports neither the plugin nor the glue.
    "engram_eval": ("engram_eval", *SHARED),
    "engram_plugin": ("engram_plugin", *SHARED, RUN_FILES, "engram_eval"),
    "lm_eval_tasks/utils.py": SHARED,
    "lm_eval_tasks/cli.py": ("lm_eval_tasks", *SHARED),
    "engram_run": (
        "engram_run",
        *SHARED,
        RUN_FILES,
        "engram_eval",
        "lm_eval_tasks",
        # Exceptions: the batch rule (micro x accumulation x GPUs) is one, for the plugin and for
        # `make train GPUS=N`; the documents study teaches its generator the pipeline's own prompt,
        # chunked as the pipeline chunks.
        "engram_plugin.effective_batch",
        "engram_data.documents.qa",
        "engram_data.documents.chunks",
        # and judges the pairs a generator wrote by their answers, normalized as the pipeline's
        # grounding check normalizes them.
        "engram_data.documents.checks",
    ),
    "engram_localize": ("engram_localize", *SHARED, "engram_eval"),
    "engram_data/documents": (*SHARED, "engram_data.options", "engram_data.documents"),
    "engram_data/contract.py": (),
    "engram_data/errors.py": (),
    "engram_data/run_files.py": (),
    "engram_data/atomic.py": ("engram_data.contract",),
}
# The exceptions above, counted, so that a new one is a decision: test_exceptions_are_counted.
EXCEPTIONS = ("engram_plugin.effective_batch", "engram_data.documents.qa", "engram_data.documents.chunks")
MAX_LINES = 300


def modules(part: str) -> list[Path]:
    path = REPO / part
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


def own_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


@pytest.mark.parametrize("part", list(ALLOWED))
def test_each_part_imports_only_the_data_contract_of_the_others(part):
    for path in modules(part):
        for name in own_imports(path):
            assert name.startswith(ALLOWED[part]), f"{path.relative_to(REPO)} imports {name}"


def test_the_bios_generator_imports_neither_documents_nor_run_glue_nor_plugin():
    for path in modules("engram_data"):
        if "documents" in path.parts or path.name == "cli.py":
            continue
        for name in own_imports(path):
            assert name.startswith("engram_data") and not name.startswith("engram_data.documents"), (path, name)


def test_no_module_is_longer_than_300_lines_without_saying_why():
    for package in PACKAGES:
        for path in modules(package):
            lines = len(path.read_text().splitlines())
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert lines <= MAX_LINES or "Over 300 lines because" in doc, f"{path.relative_to(REPO)}: {lines} lines"


def test_committed_task_files_are_what_the_generator_writes():
    proc = subprocess.run(
        [sys.executable, str(REPO / "lm_eval_tasks/_generate_configs.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


# engram_run by concern: a sub-package imports only those below it (or itself).
LAYERS = {"runs": 0, "reports": 1, "studies": 2, "tuning": 2, "demo": 3, "__main__": 4, "__init__": 4}


def run_module_graph() -> dict[str, set[str]]:
    """engram_run's modules (dotted) and the engram_run modules each imports, anywhere in it."""
    root = REPO / "engram_run"
    graph = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(("engram_run", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        graph[name] = {n for n in own_imports(path) if n.startswith("engram_run.")}
    return graph


def concern(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def test_engram_run_is_split_by_concern_with_docstrings():
    root = REPO / "engram_run"
    assert {p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "runs",
        "reports",
        "studies",
        "tuning",
    }
    assert {p.name for p in root.glob("*.py")} == {"__init__.py", "__main__.py", "demo.py"}
    for path in root.rglob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(REPO)} has no module docstring"


def test_engram_run_sub_packages_import_only_those_below_them():
    for module, imports in run_module_graph().items():
        for name in imports:
            mine, theirs = concern(module), concern(name)
            assert mine == theirs or LAYERS[theirs] < LAYERS[mine], f"{module} ({mine}) imports {name} ({theirs})"


def module_graph() -> dict[str, set[str]]:
    """Every module of our packages (dotted) and the modules of ours it imports, anywhere in it."""
    graph = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            graph[name] = own_imports(path)
    return graph


def test_exceptions_are_counted():
    listed = {name for allowed in ALLOWED.values() for name in allowed}
    assert set(EXCEPTIONS) <= listed and len(EXCEPTIONS) == 3


def test_no_package_has_import_circles():
    graph = module_graph()
    resolved = {m: {n if n in graph else n.rsplit(".", 1)[0] for n in deps} for m, deps in graph.items()}

    done: set[str] = set()

    def visit(module, path):
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for dep in resolved.get(module, ()):
            visit(dep, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def indexed_packages() -> list[Path]:
    return sorted(p.parent for package in PACKAGES for p in (REPO / package).rglob("__init__.py"))


@pytest.mark.parametrize("package", indexed_packages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_package_index_names_each_of_its_modules(package):
    """A package's docstring is its index: each module and sub-package, by name."""
    import re

    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    members = [p.stem for p in package.glob("*.py") if not p.stem.startswith("_")]
    members += [p.name for p in package.iterdir() if (p / "__init__.py").exists()]
    missing = [m for m in members if not re.search(rf"(?<![\w.]){re.escape(m)}\b", doc)]
    assert not missing, f"{package.relative_to(REPO)}/__init__.py's docstring does not name {missing}"


def test_the_plugin_readme_lists_each_module():
    readme = (REPO / "engram_plugin/README.md").read_text()
    missing = [
        p.name for p in (REPO / "engram_plugin").glob("*.py") if p.stem != "__init__" and f"`{p.name}`" not in readme
    ]
    assert not missing, f"engram_plugin/README.md's table misses {missing}"
