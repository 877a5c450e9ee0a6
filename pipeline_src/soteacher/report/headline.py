"""summary.json: the study's primary comparison and its headline numbers per recipe, which DVC tracks as metrics
(``dvc metrics show``); ``python -m soteacher headline`` prints it in words."""

from __future__ import annotations

import pandas as pd

from soteacher.report import stats
from soteacher.report.collect import ORACLE, distilled
from soteacher.report.compare import at_last_checkpoint, last_epochs, primary_epoch, primary_pairs, reference_pairs


def headline(name: str, partial: bool, students: pd.DataFrame, summary: pd.DataFrame, teachers: pd.DataFrame,
             reference: str, primary: dict) -> dict:
    """The study, whether runs are missing, how many runs it has, its primary comparison (``primary_comparison``;
    None and ``primary_missing`` saying why where the study cannot make it), the ``reference`` teachers' regime
    (``regime``; data with p* only), and per recipe its students' and teachers' numbers at the last checkpoint
    (``recipe_numbers``, ``teacher_tv``)."""
    pairs = reference_pairs(students, reference)
    main, why = primary_comparison(students, pairs, reference, primary)
    # distinct runs: the vanilla run stands under every teacher checkpoint but was trained once
    out = {"study": name, "partial": partial, "runs": int(students["run"].nunique()), "primary": main,
           "recipes": recipe_numbers(summary, pairs, reference)}
    if main is None:
        out["primary_missing"] = why
    shown = regime(teachers, reference)
    if shown:
        out["regime"] = shown
    headroom = oracle_headroom(students, reference, primary)
    if headroom is not None:
        out["oracle_headroom"] = headroom
    for recipe, tv in teacher_tv(teachers).items():
        out["recipes"].setdefault(recipe, {})["teacher_tv_pstar_train"] = tv
    return out


def recipe_numbers(summary: pd.DataFrame, pairs: pd.DataFrame, reference: str) -> dict:
    """Per recipe, averages over its KD students at the last distilled checkpoint, and the student Δ vs
    ``reference`` there with its 95 % interval over teacher seeds (each teacher seed's Δ averaged over its student
    seeds, teacher archs, methods and students)."""
    last = at_last_checkpoint(distilled(summary))
    out: dict[str, dict] = {}
    for recipe, part in last.groupby("recipe"):
        out[str(recipe)] = {
            "teacher_acc": round(float(part["teacher_acc"].mean()), 4),
            "student_last_acc": round(float(part["student_last_mean"].mean()), 4),
            "student_best_acc": round(float(part["student_best_mean"].mean()), 4),
        }
    for recipe, part in at_last_checkpoint(pairs).groupby("recipe"):
        mean, low, high, n = stats.teacher_seed_interval(part, "d_student_last_acc")
        out.setdefault(str(recipe), {})[f"student_delta_vs_{reference}"] = {
            "mean": _json_number(mean), "low": _json_number(low), "high": _json_number(high), "n": n}
    return out


def primary_comparison(students: pd.DataFrame, pairs: pd.DataFrame, reference: str,
                       primary: dict) -> tuple[dict | None, str]:
    """The study's one primary comparison (config ``report.primary``): the primary recipe's students minus the
    ``reference`` recipe's, for the primary method at the primary checkpoint, last-epoch accuracy, paired by seed
    and pooled over teacher archs and students, with its 95 % interval over teacher seeds and verdict; or (None,
    why) where the study lacks the recipe, the method, the checkpoint or the reference."""
    recipe, method = primary["recipe"], primary["method"]
    recipes = set(students["recipe"])
    for missing, what in ((recipe, "recipe"), (reference, "reference recipe")):
        if missing not in recipes:
            return None, f"the study has no {what} {missing!r}"
    if method not in set(students["method"]):
        return None, f"the study has no method {method!r}"
    chosen, epoch = primary_pairs(pairs, last_epochs(students), primary)
    if chosen.empty:
        return None, (f"no {method} students of {recipe!r} at teacher checkpoint {epoch} paired with {reference!r} "
                      "ones (same seeds, teacher arch, checkpoint and student)")
    mean, low, high, n = stats.teacher_seed_interval(chosen, "d_student_last_acc")
    return {"recipe": recipe, "reference": reference, "method": method, "checkpoint": int(epoch),
            # archs as one string: DVC metrics flattens dicts of scalars
            "teachers": ", ".join(sorted(map(str, set(chosen["teacher"])))),
            "students": ", ".join(sorted(map(str, set(chosen["student"])))),
            "metric": "student last-epoch test accuracy (pp)", "mean": _json_number(mean), "low": _json_number(low),
            "high": _json_number(high), "n": n, "unit": "teacher seeds", "verdict": stats.verdict(low, high, n)}, ""


ORACLE_PAIR = ["teacher", "teacher_epoch", "student", "teacher_seed", "seed"]


def oracle_headroom(students: pd.DataFrame, reference: str, primary: dict) -> dict | None:
    """The positive control: the p*-oracle student minus the ``reference`` recipe's student of the primary method at
    the primary checkpoint, last-epoch test accuracy, paired by student seed under each teacher seed (the oracle is
    one run per student seed, listed under every checkpoint), with its 95 % interval over teacher seeds: how much a
    student could gain from a teacher closer to p*. None without an oracle or a reference student to compare."""
    method = primary["method"]
    if ORACLE not in set(students["method"]) or reference not in set(students["recipe"]):
        return None
    epoch = primary_epoch({**primary, "recipe": reference}, last_epochs(students))
    at = students[(students["recipe"] == reference) & (students["teacher_epoch"] == epoch)]
    pairs = stats.pair(at[at["method"] == ORACLE], at[at["method"] == method], ORACLE_PAIR, ["student_last_acc"])
    if pairs.empty:
        return None
    mean, low, high, n = stats.teacher_seed_interval(pairs, "d_student_last_acc")
    return {"versus": f"{reference} {method}", "checkpoint": int(epoch), "mean": _json_number(mean),
            "low": _json_number(low), "high": _json_number(high), "n": n, "unit": "teacher seeds",
            "verdict": stats.verdict(low, high, n)}


REGIME = {"n_teachers": "n", "teacher_epoch": "checkpoint", "train_eval_acc_mean": "train_eval_acc",
          "train_ce_mean": "train_ce", "expected_max_pstar_train": "expected_max_pstar_train",
          "tv_train_turn_up_mean": "tv_train_turn_up", "val_best_test_acc_mean": "val_best_test_acc",
          "bayes_test_acc": "bayes_test_acc", "val_best_gap_to_bayes": "val_best_gap_to_bayes"}


def regime(teachers: pd.DataFrame, reference: str) -> dict[str, dict]:
    """Per teacher arch, the ``reference`` recipe's regime at its last checkpoint from the teachers table (means
    over teacher seeds): how many training labels it fits (clean train split, eval mode) against E[max p*], its
    train CE, how far its train TV to p* rose above its minimum, and its validation-chosen checkpoint's test
    accuracy against the Bayes accuracy. Empty for data without p* or a study without the reference recipe."""
    if teachers.empty or "tv_train_turn_up_mean" not in teachers or "expected_max_pstar_train" not in teachers:
        return {}
    rows = teachers[(teachers["recipe"] == reference) & teachers["expected_max_pstar_train"].notna()]
    return {str(row["teacher"]): {"recipe": reference, **{name: _json_number(row[column]) if column in row else None
                                                          for column, name in REGIME.items()}}
            for _, row in rows.iterrows()}


def teacher_tv(teachers: pd.DataFrame) -> dict[str, float]:
    """Per recipe, the teachers' training-split TV to p* at the last checkpoint (the mean over teacher archs of
    the means over seeds), from the teachers table."""
    if teachers.empty or teachers["tv_pstar_train_mean"].isna().all():
        return {}
    return {str(r): round(float(v), 6) for r, v in teachers.groupby("recipe")["tv_pstar_train_mean"].mean().items()
            if pd.notna(v)}


def _json_number(value: float, digits: int = 4) -> float | None:
    """Rounded, or None for NaN (JSON has no NaN; DVC would not parse it)."""
    return None if pd.isna(value) else round(float(value), digits)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _num(value: float | None, digits: int, sign: str = "") -> str:
    return "–" if value is None else f"{value:{sign}.{digits}f}"


def _seeds(n: int) -> str:
    return f"{n} teacher seed" + ("" if n == 1 else "s")


def headline_words(summary: dict, outputs: list[str], report_command: str) -> str:
    """What ``python -m soteacher headline`` prints: the study's primary comparison in plain words (or why it has
    none), the oracle's headroom where summary.json has one (``oracle_headroom``), then where its tables and figures
    are and how to build the HTML report."""
    lines = [f"Study {summary['study']!r}" + (" (PARTIAL: some runs are missing)" if summary.get("partial") else "")]
    p = summary.get("primary")
    if p is None:
        lines.append(f"Primary comparison: none ({summary.get('primary_missing', 'not in summary.json')}).")
    else:
        interval = "no interval (one teacher seed)" if p["low"] is None else \
            f"95 % interval [{p['low']:+.2f}, {p['high']:+.2f}] pp"
        lines.append(f"Primary comparison: {p['method']} students ({p['students']}) of {p['recipe']} "
                     f"teachers minus those of {p['reference']} teachers at teacher checkpoint {p['checkpoint']}, "
                     f"last-epoch test accuracy: {p['mean']:+.2f} pp, {interval}, over {_seeds(p['n'])}: "
                     f"{p['verdict']}.")
    for arch, r in summary.get("regime", {}).items():
        chosen = ("no validation-chosen checkpoint" if r["val_best_gap_to_bayes"] is None else
                  f"validation-chosen checkpoint {r['val_best_gap_to_bayes']:+.2f} pp from the Bayes test accuracy "
                  f"({_pct(r['bayes_test_acc'])})")
        lines.append(f"Regime of the {r['recipe']} {arch} teachers (checkpoint {r['checkpoint']:g}, mean of "
                     f"{_seeds(int(r['n']))}): {_pct(r['train_eval_acc'])} of training labels fitted (E[max p*] "
                     f"{_pct(r['expected_max_pstar_train'])}, train CE {_num(r['train_ce'], 4)}); train TV to p* "
                     f"{_num(r['tv_train_turn_up'], 3, '+')} above its minimum; {chosen}.")
    oracle = summary.get("oracle_headroom")
    if oracle and oracle.get("mean") is not None:
        bounds = "" if oracle.get("low") is None else f", 95 % interval [{oracle['low']:+.2f}, {oracle['high']:+.2f}]"
        lines.append(f"Oracle headroom: p*-oracle student minus the {oracle['versus']} student (checkpoint "
                     f"{oracle['checkpoint']}) {oracle['mean']:+.2f} pp{bounds}, over {_seeds(oracle['n'])}.")
    lines += ["Tables and figures:", *(f"  {path}" for path in outputs), f"HTML report: {report_command}"]
    return "\n".join(lines) + "\n"
