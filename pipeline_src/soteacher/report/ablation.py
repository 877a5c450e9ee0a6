"""The ablation (paper Fig. 2 shape): recipes that differ from the default SoTeacher recipe in exactly one
hyper-parameter, read from their config (not their names), and their students at the last distilled checkpoint
next to the standard teacher's."""

from __future__ import annotations

import pandas as pd

from soteacher.report.collect import STANDARD
from soteacher.report.compare import at_last_checkpoint

ABLATED = {  # which recipe keys one ablation axis varies, and whether its values are numbers
    "lambda_lr": ({"lambda_lr"}, True),
    "lambda_cr": ({"lambda_cr"}, True),
    "cr_schedule": ({"cr_schedule", "cr_start_epoch"}, False),
    "lipschitz_bound": ({"lipschitz_bound"}, False),
}
DEFAULT_RECIPE = "soteacher"


def ablation_points(recipes: dict[str, dict], default: str = DEFAULT_RECIPE) -> list[dict]:
    """Recipes that differ from the default recipe in exactly one hyper-parameter (read from their config,
    not their names): one entry per (parameter, value, recipe), the default itself included on every axis
    that has at least one variant. Empty when the study has no ablation recipes."""
    if default not in recipes:
        return []
    base = recipes[default]
    points = []
    for name, recipe in recipes.items():
        if name in (default, STANDARD):
            continue
        changed = {k for k in set(base) | set(recipe) if base.get(k) != recipe.get(k)}
        for param, (keys, _) in ABLATED.items():
            if param in changed and changed <= keys:
                points.append({"parameter": param, "value": _ablation_value(recipe, param), "recipe": name,
                               "is_default": False})
                break
    for param in dict.fromkeys(p["parameter"] for p in points):
        points.append({"parameter": param, "value": _ablation_value(base, param), "recipe": default,
                       "is_default": True})
    return points


def _ablation_value(recipe: dict, param: str):
    value = recipe.get(param)
    if param == "cr_schedule" and value == "step":
        return f"step@{recipe.get('cr_start_epoch')}"
    return value


def ablation_table(table: pd.DataFrame, recipes: dict[str, dict]) -> pd.DataFrame:
    """Student accuracy per ablation point at the last distilled checkpoint, with the standard reference."""
    columns = ["parameter", "value", "recipe", "is_default", "teacher", "student", "method", "teacher_epoch",
               "teacher_acc", "student_last_mean", "student_last_std", "student_best_mean", "n",
               "standard_student_last_mean"]
    points = pd.DataFrame(ablation_points(recipes))
    if points.empty:
        return pd.DataFrame(columns=columns)
    last = at_last_checkpoint(table)
    out = points.merge(last, on="recipe")
    ref = last[last["recipe"] == STANDARD][["teacher", "student", "method", "student_last_mean"]]
    out = out.merge(ref.rename(columns={"student_last_mean": "standard_student_last_mean"}),
                    on=["teacher", "student", "method"], how="left")
    out["_order"] = out["value"].map(lambda v: (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v)))
    out = out.sort_values(["parameter", "teacher", "student", "method", "_order"]).drop(columns="_order")
    return out[columns].reset_index(drop=True)
