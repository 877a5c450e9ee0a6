"""A result's identity: the one hash in its folder's name.

A data set, teacher or student is named by the hash of the settings that determine it **and differ from the schema's
defaults**, plus the results format (``FORMAT``). A setting at its default is left out, so a release that adds a
setting with a default (a data option, a teacher-term parameter, a KD-method parameter) renames nothing: every
existing result keeps its folder and no study retrains. A setting given its default explicitly is the same result as
one left out. Numbers are compared as numbers (``lr: 1`` is ``lr: 1.0``).

``FORMAT`` is raised when the meaning of a result changes without any setting changing (a default's value, what a
result's files hold, how a loss is computed): every name changes once, deliberately.

What goes into each identity (the rest of a result's name is readable: data set, architecture, recipe, seed,
checkpoint epoch, method):

* data set: the ``data`` section (not where its raw files are read from);
* teacher: its architecture, seed and recipe terms (each term's parameters that differ from the term's defaults),
  ``teacher.epochs``, ``checkpoint_every``, ``eval_every``, ``optim`` and ``filter_table``, and ``compute``; its
  data set is its parent folder;
* imported teacher: its ``teacher.imports`` entry and ``compute``;
* student: its method's parameters, ``distill.epochs``, ``eval_every`` and ``optim``, and ``compute``; its teacher
  checkpoint (or, for the vanilla student, its data set), architecture and seed are its parent folders.

Settings that change no number of a result (``NOT_IDENTITY``) are left out of all of them.
"""

from __future__ import annotations

from typing import Any

from soteacher.core.digest import stable_hash
from soteacher.study.config import defaults_at

FORMAT = 2  # 1: the layout before (hashes over every setting, defaults included)
NOT_IDENTITY = {"data": ("root", "download"), "compute": ("resume_every", "collective_timeout_s")}
_SAME = object()


def non_default(value: Any, default: Any) -> Any:
    """The part of ``value`` that differs from ``default``: mappings key by key (a key the default lacks is kept
    whole), anything else as a whole; ``_SAME`` where nothing differs."""
    if isinstance(value, dict) and isinstance(default, dict):
        out = {}
        for key, item in value.items():
            differs = non_default(item, default[key]) if key in default else item
            if differs is not _SAME:
                out[key] = differs
        return out or _SAME
    return _SAME if value == default else value


def _differs(value: Any, default: Any) -> Any:
    """``non_default`` with ``{}`` for "nothing differs" (what goes into a hash)."""
    out = non_default(value, default)
    return {} if out is _SAME else out


def _section(config: dict, name: str) -> dict:
    """A config section without the settings that change no number."""
    return {k: v for k, v in config[name].items() if k not in NOT_IDENTITY.get(name, ())}


def _compute(config: dict) -> Any:
    return _differs(_section(config, "compute"), {k: v for k, v in defaults_at("compute").items()
                                                  if k not in NOT_IDENTITY["compute"]})


def data_id(config: dict) -> str:
    """A data set's folder name: ``<dataset>-<identity>``."""
    defaults = {k: v for k, v in defaults_at("data").items() if k not in NOT_IDENTITY["data"]}
    return f"{config['data']['dataset']}-" + stable_hash({"format": FORMAT,
                                                          "data": _differs(_section(config, "data"), defaults)})


def teacher_id(config: dict, arch: str, recipe: str, seed: int) -> str:
    t = config["teacher"]
    terms = {term: _differs(params, defaults_at("teacher", "recipes", recipe, term))
             for term, params in t["recipes"][recipe].items()}
    # filter_table changes no weight but what the checkpoints hold: a teacher without the table cannot serve filter_kd
    # eval_every changes no weight but what metrics.json holds (which epochs are evaluated)
    training = {k: t[k] for k in ("epochs", "checkpoint_every", "eval_every", "optim", "filter_table")}
    return stable_hash({"format": FORMAT, "arch": arch, "seed": seed, "terms": terms,
                        "teacher": _differs(training, {k: defaults_at("teacher", k) for k in training}),
                        "compute": _compute(config)})


def import_id(config: dict, name: str) -> str:
    entry = config["teacher"]["imports"][name]
    return stable_hash({"format": FORMAT, "import": _differs(entry, defaults_at("teacher", "imports", name)),
                        "compute": _compute(config)})


def student_id(config: dict, method: str) -> str:
    d = config["distill"]
    training = {k: d[k] for k in ("epochs", "eval_every", "optim")}  # eval_every: which epoch is best_epoch
    return stable_hash({"format": FORMAT, "method": method,
                        "params": _differs(d["methods"][method], defaults_at("distill", "methods", method)),
                        "distill": _differs(training, {k: defaults_at("distill", k) for k in training}),
                        "compute": _compute(config)})
