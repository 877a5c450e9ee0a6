"""The ablation (paper Fig. 2 shape): recipes that differ from the base recipe (``report.ablation_recipe``) in exactly
one term's parameters, read from their config (not their names), and their students at the last distilled checkpoint
next to the reference recipe's (``report.reference_recipe``).

A point's axis is ``<term>.<parameter>``. A recipe that lacks one of the base's terms is the point where that term's
weight (``TeacherTerm.weight_param``) is 0; parameters that only qualify another (``TeacherTerm.joint_params``) lie on
that one's axis, with the value the term shows for it (``TeacherTerm.axis_value``, e.g. ``step@150``).
"""

from __future__ import annotations

import pandas as pd

from soteacher.report.compare import at_last_checkpoint
from soteacher.teachers.terms import TERMS


def ablation_points(recipes: dict[str, dict], base: str, reference: str) -> list[dict]:
    """Recipes (``{term: params}``, defaults filled) that differ from recipe ``base`` on one axis: one entry per
    (parameter, value, recipe), the base itself included on every axis that has at least one variant. The reference
    recipe is no point (it is the figure's reference line). Empty when the study has no ablation recipes."""
    if base not in recipes:
        return []
    points = []
    for name, recipe in recipes.items():
        if name in (base, reference):
            continue
        axis = _axis(recipes[base], recipe)
        if axis is not None:
            term, param = axis
            points.append({"parameter": f"{term}.{param}",
                           "value": TERMS[term].axis_value(_params_of(recipe, recipes[base], term), param),
                           "recipe": name, "is_default": False})
    for parameter in dict.fromkeys(p["parameter"] for p in points):
        term, param = parameter.split(".", 1)
        points.append({"parameter": parameter, "value": TERMS[term].axis_value(recipes[base][term], param),
                       "recipe": base, "is_default": True})
    return points


def _params_of(recipe: dict, base: dict, term: str) -> dict | None:
    """The recipe's parameters of one of the base's terms; a term it lacks reads as the base's at weight 0 (None:
    the term has no weight, so leaving it out is no point on an axis)."""
    if term in recipe:
        return recipe[term]
    weight = TERMS[term].weight_param
    return None if weight is None else {**base[term], weight: 0.0}


def _axis(base: dict, recipe: dict) -> tuple[str, str] | None:
    """(term, parameter) of the one axis on which ``recipe`` differs from ``base``; None for any other difference."""
    if set(recipe) - set(base):
        return None
    differing = []
    for term in base:
        params = _params_of(recipe, base, term)
        if params is None:
            return None
        changed = {k for k in set(base[term]) | set(params) if base[term].get(k) != params.get(k)}
        if changed:
            differing.append((term, {TERMS[term].joint_params.get(k, k) for k in changed}))
    if len(differing) != 1 or len(differing[0][1]) != 1:
        return None
    term, (param,) = differing[0]
    return term, param


def ablation_table(table: pd.DataFrame, recipes: dict[str, dict], base: str, reference: str) -> pd.DataFrame:
    """Student accuracy per ablation point at the last distilled checkpoint, with the reference recipe's students
    (``<reference>_student_last_mean``)."""
    columns = ["parameter", "value", "recipe", "is_default", "teacher", "student", "method", "teacher_epoch",
               "teacher_acc", "student_last_mean", "student_last_std", "student_best_mean", "n",
               f"{reference}_student_last_mean"]
    points = pd.DataFrame(ablation_points(recipes, base, reference))
    if points.empty:
        return pd.DataFrame(columns=columns)
    last = at_last_checkpoint(table)
    out = points.merge(last, on="recipe")
    ref = last[last["recipe"] == reference][["teacher", "student", "method", "student_last_mean"]]
    out = out.merge(ref.rename(columns={"student_last_mean": f"{reference}_student_last_mean"}),
                    on=["teacher", "student", "method"], how="left")
    out["_order"] = out["value"].map(lambda v: (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v)))
    out = out.sort_values(["parameter", "teacher", "student", "method", "_order"]).drop(columns="_order")
    return out[columns].reset_index(drop=True)
