"""The package's boundary: the teacher side (what a teacher's numbers depend on, the DVC teachers stage) never
imports the student side, so editing a KD method, a table or the planner cannot change a teacher."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline_src" / "soteacher"


def _imports(path: Path, module_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def _student_side_imports(folder: str, module_level_only: bool, root: Path = PACKAGE) -> dict[str, list[str]]:
    found = {}
    for path in sorted((root / folder).rglob("*.py")):
        bad = [n for n in _imports(path, module_level_only) if n.startswith("soteacher.student_side")]
        if bad:
            found[path.relative_to(root).as_posix()] = bad
    return found


def test_the_teacher_side_never_imports_the_student_side():
    assert _student_side_imports("teacher_side", module_level_only=False) == {}


def test_common_modules_import_the_student_side_only_inside_functions():
    # config's deep check instantiates the KD methods; it runs in Snakemake's start-up, never in a teacher job
    assert _student_side_imports("common", module_level_only=True) == {}


def test_the_scan_sees_an_import_of_the_student_side(tmp_path):
    fake = tmp_path / "teacher_side"
    fake.mkdir()
    (fake / "m.py").write_text("import os\n\n\ndef f():\n    from soteacher.student_side.methods import METHODS\n")
    assert _student_side_imports("teacher_side", module_level_only=False, root=tmp_path) == {
        "teacher_side/m.py": ["soteacher.student_side.methods", "soteacher.student_side.methods.METHODS"]}
    assert _student_side_imports("teacher_side", module_level_only=True, root=tmp_path) == {}
