"""Atomic writes: complete or absent, and readable as the umask allows (not mkstemp's 0600); checkpoints that
are not ours, truncated or pickled code are refused with a clear error."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from soteacher.core import io
from soteacher.core.io import CheckpointError, load_checkpoint


def test_written_files_get_the_permissions_the_umask_gives(tmp_path):
    io.write_text(tmp_path / "table.md", "x\n")
    mode = stat.S_IMODE(os.stat(tmp_path / "table.md").st_mode)
    assert mode == 0o666 & ~io._UMASK
    assert mode & stat.S_IRGRP or io._UMASK & stat.S_IRGRP  # group-readable unless the umask forbids it
    assert (tmp_path / "table.md").read_text() == "x\n" and not list(tmp_path.glob(".*.tmp"))


def test_malicious_pickle_checkpoint_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"model": Boom()}, path)
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_foreign_checkpoints_give_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(3)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="not a soteacher checkpoint"):
        load_checkpoint(foreign)
