"""The command line (soteacher.cli): commands that train nothing start without torch."""

from __future__ import annotations

import pytest

from tests.helpers import REPO, python_output


@pytest.mark.slow
def test_commands_without_training_do_not_import_torch(tmp_path):
    # init-tracking, and the config check Snakemake runs at start-up (the aggregate job's too)
    loaded = python_output(
        "import sys\n"
        "from soteacher.study import config\n"
        "from soteacher.cli import main\n"
        f"main(['init-tracking', '--experiment', 'x', '--tracking-uri', 'sqlite:///{tmp_path}/m.db'])\n"
        f"config.load({str(REPO / 'config/config.yaml')!r}, deep=False)\n"
        "print('torch' in sys.modules)")
    assert loaded.splitlines()[-1] == "False"
