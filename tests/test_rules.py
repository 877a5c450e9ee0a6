"""The workflow's rule files: `snakemake --lint` finds nothing but the two lints this workflow accepts on purpose
(snakefmt's formatting check runs in `make lint`)."""

from __future__ import annotations

import re

import pytest

from tests.helpers import copy_workflow, run

ACCEPTED = {
    # the software is the project's venv (`make install`, pinned in pyproject.toml); a conda env file nobody runs
    # here would be a stub, and the SLURM profile runs jobs in the same venv
    "Specify a conda environment or container for each rule.",
    # the MLflow URI and experiment (the study) stay out of params on purpose: Snakemake re-runs a job whose params
    # change, and where a job logs, or which study asked for a shared teacher, must not re-run it
    "Shell command directly uses variable TRACKING_URI from outside of the rule",
    "Shell command directly uses variable EXPERIMENT from outside of the rule",
}


def lints(text: str) -> dict[str, set[str]]:
    """What `snakemake --lint` reported, per rule or file: {"rule distill": {lint title, ...}}."""
    found: dict[str, set[str]] = {}
    where = None
    for line in text.splitlines():
        if m := re.match(r"^Lints for (rule \w+|snakefile [^\s:]+)", line):
            where = m[1]
            found[where] = set()
        elif where is not None and (m := re.match(r"^    \* (.+?):?$", line)):
            found[where].add(m[1])
    return found


@pytest.mark.slow
def test_snakemake_lint_finds_only_the_accepted_lints(tmp_path):
    out = run(["snakemake", "--lint"], copy_workflow(tmp_path), check=False)
    found = lints(out.stdout + out.stderr)
    assert out.returncode in (0, 1), out.stderr[-3000:]  # 1: lints were found
    assert {"rule train_teacher", "rule distill", "rule aggregate"} <= set(found)  # it linted the rules
    unexpected = {where: titles - ACCEPTED for where, titles in found.items() if titles - ACCEPTED}
    assert unexpected == {}, out.stdout + out.stderr


def test_the_lint_parser_sees_a_new_lint():
    text = ("Lints for rule distill (line 5, distill.smk):\n    * Specify a conda environment or container for each "
            "rule.:\n      This way...\n    * Param spec is a prefix of input or output file but hardcoded:\n"
            "Lints for snakefile Snakefile:\n    * Mixed rules and functions in same snakefile.:\n")
    assert lints(text) == {"rule distill": {"Specify a conda environment or container for each rule.",
                                            "Param spec is a prefix of input or output file but hardcoded"},
                           "snakefile Snakefile": {"Mixed rules and functions in same snakefile."}}
