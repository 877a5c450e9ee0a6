"""The package's layers (``soteacher.LAYERS``): no module imports a layer above its own, packages that share a layer
do not import each other, and DVC's teachers stage depends on everything a teacher job runs and on nothing of the
students' side. Every import counts, at the top of a module or inside a function (a lazy import runs all the same)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

import soteacher
from tests.helpers import REPO

PACKAGE = REPO / "pipeline_src" / "soteacher"


def imports_of(path: Path, top_level_only: bool = False, root: Path = PACKAGE) -> set[str]:
    """Every ``soteacher`` module ``path`` imports (``from soteacher.x import y`` counts as ``soteacher.x`` and, when
    ``y`` is a module, ``soteacher.x.y``); ``top_level_only``: not those inside functions."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in (_top_level(tree) if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "soteacher":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}", root)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "soteacher"}
    return found


def _top_level(tree: ast.Module):
    """The statements that run on import: the module's own, and those in its top-level if/try blocks."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            todo += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                     *(h for handler in getattr(node, "handlers", []) for h in handler.body)]


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(("soteacher", *parts))


def layer_of(module: str, layers=soteacher.LAYERS) -> int | None:
    """The index of a module's layer; None for the package's face (``soteacher`` itself: its version and layers)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return next(i for i, packages in enumerate(layers) if parts[1] in packages)


def violations(root: Path = PACKAGE, layers=soteacher.LAYERS) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        own = layer_of(module, layers)
        for imported in sorted(imports_of(path, root=root)):
            theirs = layer_of(imported, layers)
            if own is None or theirs is None:
                continue
            same_package = imported.split(".")[1] == module.split(".")[1]
            if theirs > own or (theirs == own and not same_package):
                out.append(f"{module} imports {imported}")
    return out


def test_every_package_is_in_exactly_one_layer():
    packages = sorted({p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.glob("*")
                       if p.name != "__pycache__" and (p.suffix == ".py" or p.is_dir())} - {"__init__"})
    listed = [p for layer in soteacher.LAYERS for p in layer]
    assert sorted(listed) == packages and len(set(listed)) == len(listed)


def test_no_module_imports_a_layer_above_it_or_a_sibling():
    assert violations() == []


def test_the_check_sees_an_upward_a_sibling_and_a_lazy_import(tmp_path):
    for package in ("core", "teachers", "methods"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("import os\n\n\ndef f():\n    from soteacher.teachers import b\n")
    (tmp_path / "teachers" / "b.py").write_text("from soteacher.methods.c import X\nfrom soteacher.core import a\n")
    (tmp_path / "methods" / "c.py").write_text("X = 1\n")
    layers = (("core",), ("teachers", "methods"))
    assert violations(tmp_path, layers) == ["soteacher.core.a imports soteacher.teachers",
                                            "soteacher.core.a imports soteacher.teachers.b",
                                            "soteacher.teachers.b imports soteacher.methods.c"]


def closure(modules: set[str], lazy: bool) -> set[str]:
    """``modules`` and everything they import, transitively (the package's modules only); ``lazy``: imports inside
    functions too, else those at the top of a module only."""
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        rel = Path(*module.split(".")[1:])
        for path in ((PACKAGE / rel).with_suffix(".py"), PACKAGE / rel / "__init__.py"):
            if path.is_file():
                todo += sorted(imports_of(path, top_level_only=not lazy) - seen)
    # importing soteacher.a.b runs soteacher/a/__init__.py too
    return seen | {".".join(m.split(".")[:i]) for m in seen for i in range(2, m.count(".") + 1)}


def _teachers_stage_deps() -> list[str]:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["teachers"]["do"]
    return [d.rstrip("/") for d in stage["deps"]]


def _covered(module: str, deps: list[str]) -> bool:
    rel = Path("pipeline_src", *module.split("."))
    files = [rel.with_suffix(".py").as_posix(), (rel / "__init__.py").as_posix()]
    return any(f == d or f.startswith(d + "/") for f in files for d in deps)


# what the teacher rules run (`python -m soteacher prepare-data | train-teacher | import-teacher`): everything these
# import, lazily or not, runs in a teacher job
TEACHER_JOBS = {"soteacher.data.preparation", "soteacher.teachers.job", "soteacher.teachers.importer"}
# what Snakemake and the CLI import to build the teacher jobs' specs and start them: their top-level imports run (the
# config's deep check also instantiates KD methods at start-up, inside a function: it can stop a run, never change a
# teacher's numbers)
TEACHER_SPECS = {"soteacher.__main__", "soteacher.cli", "soteacher.study.teacher_jobs", "soteacher.study.resources",
                 "soteacher.study.config"}
STUDENT_SIDE = ("methods", "students", "report")


def test_the_dvc_teachers_stage_depends_on_all_a_teacher_job_runs_and_nothing_of_the_students():
    runs = closure(TEACHER_JOBS, lazy=True) | closure(TEACHER_SPECS, lazy=False)
    deps = _teachers_stage_deps()
    assert sorted(m for m in runs if not _covered(m, deps)) == []
    assert [m for m in runs if m.count(".") and m.split(".")[1] in STUDENT_SIDE] == []
    assert [d for d in deps if any(d.startswith(f"pipeline_src/soteacher/{p}") for p in STUDENT_SIDE)] == []
