"""Load and validate study configs against ``workflow/schemas/config.schema.yaml``.

Validation fills the schema's defaults, then checks what a schema cannot: architecture names,
checkpoint epochs, method/architecture compatibility. Every problem is reported as one line naming
the config key and what is allowed, before any job starts.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from pathlib import Path
from typing import Any

import yaml

from soteacher.core.errors import ConfigError
from soteacher.data.registry import DATASETS
from soteacher.models.zoo import ARCHITECTURES

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = Path(os.environ.get("SOTEACHER_SCHEMA", REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"))


def load_schema() -> dict:
    """The schema, with the choices that live in a registry filled in (the YAML holds no copy of them)."""
    with open(SCHEMA_PATH) as f:
        schema = yaml.safe_load(f)
    schema["properties"]["data"]["properties"]["dataset"]["enum"] = list(DATASETS)
    return schema


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {getattr(err, 'problem', err)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error) -> str:
    key = _key(error.absolute_path)
    schema, instance = error.schema, error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed))
        where = f"{key}." if error.absolute_path else ""
        return (f"unknown key {', '.join(repr(where + e) for e in extra)}; allowed under {key}: "
                f"{', '.join(allowed) or 'nothing'}")
    if error.validator == "propertyNames":
        return f"config key {key}: name {instance!r} does not match {schema['propertyNames']['pattern']}"
    if error.validator == "type":
        return (f"config key {key}: expected {error.validator_value}, got {type(instance).__name__} "
                f"{instance!r}")
    if error.validator == "enum":
        return f"config key {key}: {instance!r} is not allowed; allowed: {', '.join(map(str, error.validator_value))}"
    if error.validator == "pattern":
        return f"config key {key}: {instance!r} must match {error.validator_value} (letters, digits, _)"
    if error.validator == "oneOf" and key.endswith("distill.checkpoints"):
        return f"config key {key}: {instance!r} must be 'all', 'last' or a list of epochs"
    return f"config key {key}: {error.message}"


def _validator():
    from jsonschema import Draft7Validator, validators

    base_properties = Draft7Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base_properties(validator, properties, instance, schema)

    return validators.extend(Draft7Validator, {"properties": fill_defaults})


@functools.cache
def _schema() -> dict:
    return load_schema()


@functools.cache
def defaults_at(*path: str) -> Any:
    """What a config holds at ``path`` when it says nothing there: the schema's default at that key, filled with the
    defaults below it. A name the schema does not list (a recipe's or a KD method's name under a map of them) takes
    the map's entry schema: ``defaults_at("distill", "methods", "crd")`` is every CRD parameter at its default.
    Cached (every job of a study asks): callers must not change what it returns."""
    root = _schema()
    node = root
    for key in path:
        node = _resolve(root, node)
        node = node.get("properties", {}).get(key) or node["additionalProperties"]
    default = copy.deepcopy(node.get("default", _resolve(root, node).get("default", {})))
    if isinstance(default, dict):
        # refs point into the root's definitions: validate against the node with them beside it
        wrapper = {**_resolve(root, node), "definitions": root.get("definitions", {})}
        for _ in _validator()(wrapper).iter_errors(default):  # filling happens while validating; errors: none here
            pass
    return default


def _resolve(root: dict, node: dict) -> dict:
    """A schema node with its ``$ref`` (``#/definitions/<name>``) followed."""
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def checkpoint_epochs(teacher: dict) -> list[int]:
    every, epochs = teacher["checkpoint_every"], teacher["epochs"]
    return sorted(set(range(every, epochs + 1, every)) | {epochs})


def distilled_checkpoints(config: dict) -> list[int]:
    """The epochs of the trained teachers' checkpoints that are distilled (``distill.checkpoints``)."""
    choice = config["distill"]["checkpoints"]
    if choice == "all":
        return checkpoint_epochs(config["teacher"])
    if choice == "last":
        return [config["teacher"]["epochs"]]
    return sorted(choice)


def distill_pairs(config: dict) -> list[tuple[str, str]]:
    """The (teacher arch, student arch) pairs to distil: ``distill.pairs`` when given, else the product
    ``teacher.archs × distill.students``."""
    pairs = config["distill"].get("pairs")
    if pairs is not None:
        return [(str(t), str(s)) for t, s in pairs]
    return [(t, s) for t in config["teacher"]["archs"] for s in config["distill"]["students"]]


def _unknown_arch(key: str, arch: str) -> str:
    return f"config key {key}: unknown architecture {arch!r}; allowed: {', '.join(sorted(ARCHITECTURES))}"


def _pairs_errors(config: dict) -> list[str]:
    pairs = config["distill"].get("pairs")
    if pairs is None:
        return []
    errors, archs = [], config["teacher"]["archs"]
    for i, (teacher, student) in enumerate(pairs):
        if teacher not in archs:
            errors.append(f"config key distill.pairs[{i}][0]: teacher {teacher!r} is not in teacher.archs "
                          f"({', '.join(archs)})")
        if student not in ARCHITECTURES:
            errors.append(_unknown_arch(f"distill.pairs[{i}][1]", student))
    if len({tuple(p) for p in pairs}) != len(pairs):
        errors.append("config key distill.pairs: a teacher -> student pair is listed twice")
    unused = [a for a in archs if a not in {t for t, _ in pairs}]
    if unused:
        errors.append(f"config key teacher.archs: {', '.join(unused)} appear in no distill.pairs entry "
                      "(their teachers would be trained for nothing)")
    return errors


def _semantic_errors(config: dict, deep: bool) -> list[str]:
    errors = []
    # with distill.pairs, distill.students is not used: the pairs name the students
    keys = (("teacher", "archs"),) if config["distill"].get("pairs") is not None else \
        (("teacher", "archs"), ("distill", "students"))
    for section, key in keys:
        for i, arch in enumerate(config[section][key]):
            if arch not in ARCHITECTURES:
                errors.append(_unknown_arch(f"{section}.{key}[{i}]", arch))
    errors += _pairs_errors(config)
    teacher, distill = config["teacher"], config["distill"]
    if teacher["checkpoint_every"] > teacher["epochs"]:
        errors.append(f"config key teacher.checkpoint_every: {teacher['checkpoint_every']} exceeds "
                      f"teacher.epochs={teacher['epochs']}")
    if isinstance(distill["checkpoints"], list):
        saved = checkpoint_epochs(teacher)
        missing = [e for e in distill["checkpoints"] if e not in saved]
        if missing:
            errors.append(f"config key distill.checkpoints: epochs {missing} are not saved; "
                          f"saved checkpoints: {saved}")
    for section in ("teacher", "distill"):
        milestones = config[section]["optim"]["lr_milestones"]
        if milestones != sorted(set(milestones)):
            errors.append(f"config key {section}.optim.lr_milestones: must be strictly increasing, got {milestones}")
    syn = config["data"]["synthetic"]
    grid = syn["image_size"] // syn["patch_size"]
    if config["data"]["dataset"] == "synthetic" and syn["features_per_image"] > min(grid * grid, syn["num_features"]):
        errors.append(f"config key data.synthetic.features_per_image: {syn['features_per_image']} exceeds the "
                      f"{grid}x{grid} patch grid or num_features={syn['num_features']}")
    errors += _import_errors(config, deep)
    errors += _soft_target_errors(config)
    if deep and not errors:
        errors += _pair_errors(config)
    return errors


def _import_errors(config: dict, deep: bool) -> list[str]:
    """``teacher.imports``: known architectures, names distinct from the trained recipes, some teacher at all;
    ``deep``: the checkpoint files exist (Snakemake would otherwise skip a missing one without a word when
    the import's outputs are already there)."""
    teacher = config["teacher"]
    imports = teacher.get("imports", {})
    errors = []
    for name, imp in imports.items():
        if imp["arch"] not in ARCHITECTURES:
            errors.append(_unknown_arch(f"teacher.imports.{name}.arch", imp["arch"]))
        if "{" in imp["path"] or "}" in imp["path"]:
            errors.append(f"config key teacher.imports.{name}.path: {imp['path']!r} contains a brace, which "
                          "Snakemake would read as a wildcard; rename the file")
        elif deep and not Path(imp["path"]).is_file():
            errors.append(f"config key teacher.imports.{name}.path: no file {imp['path']!r} "
                          f"(relative paths start at {Path.cwd()})")
        if name in teacher["recipes"]:
            errors.append(f"config key teacher.imports.{name}: the name is also a teacher.recipes entry "
                          "(both would write the same results folder); rename one")
    if not teacher["recipes"] and not imports:
        errors.append("config key teacher.recipes: empty, and there are no teacher.imports: no teacher at all")
    return errors


def _soft_target_errors(config: dict) -> list[str]:
    """Methods whose targets are per training sample need them to exist: ``oracle`` p*(x) (synthetic data),
    ``filter_kd`` the table its trained teachers record (``teacher.filter_table``; an imported teacher has none)."""
    methods, teacher, errors = config["distill"]["methods"], config["teacher"], []
    dataset = config["data"]["dataset"]
    if "oracle" in methods and not DATASETS[dataset].pstar:
        errors.append(f"config key distill.methods.oracle: the oracle student learns p*(x), the true label "
                      f"distribution, which data set {dataset!r} does not have (data sets with p*: "
                      f"{', '.join(n for n, d in DATASETS.items() if d.pstar)}); remove it")
    if "filter_kd" in methods:
        if teacher.get("filter_table") is None:
            errors.append("config key distill.methods.filter_kd: Filter-KD distils the teachers' moving-average "
                          "table, which they record only with teacher.filter_table set (e.g. "
                          "teacher.filter_table: {}); set it or remove filter_kd")
        if teacher.get("imports"):
            errors.append(f"config key distill.methods.filter_kd: imported teachers ({', '.join(teacher['imports'])}) "
                          "have no Filter-KD table (it is recorded while a teacher trains); remove filter_kd or the "
                          "imports")
    return errors


def _pair_errors(config: dict) -> list[str]:
    """Instantiate every method on every teacher/student pair with tiny inputs; report what fails."""
    import torch

    from soteacher.methods import METHODS
    from soteacher.models import build_model, feature_shapes

    image_shape = input_shape(config)
    num_classes = 10
    outputs = {}
    pairs = distill_pairs(config)
    for arch in sorted({a for pair in pairs for a in pair}):
        torch.manual_seed(0)
        outputs[arch] = feature_shapes(build_model(arch, num_classes), image_shape)
    errors = []
    for name, cfg in config["distill"]["methods"].items():
        for t, s in pairs:
            try:
                METHODS[name](cfg, outputs[s], outputs[t], num_samples=16)
            except (ValueError, IndexError, RuntimeError) as err:
                errors.append(f"config key distill.methods.{name}: cannot distil {t} -> {s}: {err}")
    return errors


def input_shape(config: dict) -> tuple[int, int, int]:
    data = config["data"]
    if data["dataset"] == "synthetic":
        size = data["synthetic"]["image_size"]
        return (3, size, size)
    return DATASETS[data["dataset"]].image_shape  # type: ignore[return-value]


def _non_finite(obj: Any, path: tuple = ()) -> list[str]:
    """NaN and ±inf anywhere in the config (YAML's .nan/.inf): JSON-Schema bounds let NaN through."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"config key {_key(path)}: {obj} is not a finite number"]
    if isinstance(obj, dict):
        return [m for k, v in obj.items() for m in _non_finite(v, (*path, k))]
    if isinstance(obj, list):
        return [m for i, v in enumerate(obj) for m in _non_finite(v, (*path, i))]
    return []


def train_size(config: dict) -> int:
    """Training samples a study's jobs see (after data.train_limit, without the held-out val split)."""
    data = config["data"]
    if data["dataset"] == "synthetic":
        return data["synthetic"]["train_size"]
    train = DATASETS[data["dataset"]].full_size[0]
    if data.get("train_limit"):
        train = min(train, data["train_limit"])
    return train - (data.get("val_size") or 0)


def never_in_effect(config: dict) -> list[str]:
    """Settings that can never take effect, each naming its key and what happens instead."""
    found = []
    for section in ("teacher", "distill"):
        epochs, optim = config[section]["epochs"], config[section]["optim"]
        if optim["lr_schedule"] == "cosine":
            if optim["lr_milestones"]:
                found.append(f"config key {section}.optim.lr_milestones: {optim['lr_milestones']} are not used with "
                             f"{section}.optim.lr_schedule cosine (the lr follows the cosine alone)")
            continue
        late = [m for m in optim["lr_milestones"] if m >= epochs]
        if late:
            kept = [m for m in optim["lr_milestones"] if m < epochs]
            found.append(f"config key {section}.optim.lr_milestones: {late} at or beyond {section}.epochs={epochs} "
                         f"never decay the lr (the decays that happen: {kept or 'none'})")
    epochs = config["teacher"]["epochs"]
    for name, recipe in config["teacher"]["recipes"].items():
        cr = recipe.get("consistency")
        if cr and cr["weight"] > 0 and cr["schedule"] == "step" and cr["start_epoch"] >= epochs:
            found.append(f"config key teacher.recipes.{name}.consistency.start_epoch: {cr['start_epoch']} is not "
                         f"before teacher.epochs={epochs}: with schedule step the consistency term never switches on "
                         "(λ_CR stays 0)")
    crd, samples = config["distill"]["methods"].get("crd"), train_size(config)
    if crd is not None and crd["nce_k"] > samples:
        found.append(f"config key distill.methods.crd.nce_k: {crd['nce_k']} exceeds the {samples} training samples: "
                     f"an anchor's negatives repeat samples (at most {samples} distinct)")
    return found


def validate(config: dict, deep: bool = True) -> dict:
    """Return a validated copy of ``config`` with defaults filled; raise ConfigError listing every problem. With
    ``deep`` (Snakemake's start-up, check-config) also warn about settings that can never take effect."""
    config = copy.deepcopy(config)
    validator = _validator()(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    messages = _non_finite(config) + [_describe(e) for e in errors]
    if not messages:
        messages = _semantic_errors(config, deep)
    if messages:
        raise ConfigError("invalid config:\n  " + "\n  ".join(messages))
    if deep:
        for warning in never_in_effect(config):
            log.warning(warning)
    return config


def load(path: str | Path, deep: bool = True) -> dict:
    return validate(read_yaml(path), deep=deep)

