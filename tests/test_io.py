"""Atomic writes: complete or absent, and readable as the umask allows (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

from soteacher.common import io


def test_written_files_get_the_permissions_the_umask_gives(tmp_path):
    io.write_text(tmp_path / "table.md", "x\n")
    mode = stat.S_IMODE(os.stat(tmp_path / "table.md").st_mode)
    assert mode == 0o666 & ~io._UMASK
    assert mode & stat.S_IRGRP or io._UMASK & stat.S_IRGRP  # group-readable unless the umask forbids it
    assert (tmp_path / "table.md").read_text() == "x\n" and not list(tmp_path.glob(".*.tmp"))
