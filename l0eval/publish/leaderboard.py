"""`l0eval leaderboard`: regenerate leaderboard/ from every family result in results/.

Writes README.md and index.html (jinja2 templates in ``l0eval/publish/templates/``, tables built with
pandas), leaderboard.csv (one row per family, target and selector) and plots/<family>.png (each metric vs
L0, every selector's pick, the targets; ``l0eval.publish.plots``). Families with a known true L0 (toys,
synthetic worlds) and LLM families (downstream targets) get separate tables: their errors and regrets
mean different things. Nothing in the output depends on the time or the machine, so regenerating from
the same results gives byte-identical files; ``l0eval.publish.screenshots`` adds browser screenshots.

Everything is rendered from the verdict's plain data (its ``rows`` and the tally), so fields a newer
verdict adds to a row reach the CSV without a change here.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from l0eval.errors import ResultsError
from l0eval.family.sae_lens_ids import member_identity
from l0eval.results import read_results
from l0eval.safe_names import path_component
from l0eval.selection.bootstrap import BootstrapDesign
from l0eval.selection.verdict import NotJudgeable, is_known_truth, judge_family, selector_tally, summary_line

CSV_COLUMNS = ("family", "target", "target_l0", "selector", "chosen_l0", "interval_90_low", "interval_90_high",
               "point_share", "plausible_l0s", "error_l0", "error_steps", "within_one", "score", "best_score",
               "regret")

NOT_FAMILY_PREFIXES = ("bench_", "demo_")
TRUE_L0 = "true_l0"
# Cell colours by |error| in grid steps: (css class, legend text); 3 and more share the last
STEP_CLASSES = (("s0", "on target"), ("s1", "1 step off"), ("s2", "2 steps off"), ("s3", "3+ steps off"))


def judged_families(results_dir: str | Path, design: BootstrapDesign = BootstrapDesign()
                    ) -> tuple[list[tuple[dict, dict]], list[str]]:
    """(results, verdict) for every family result in ``results_dir`` (sorted by file name; ``bench_*.json``
    and ``demo_*.json`` are benchmarks and demos, not families), and one line for each file that has no L0
    sweep to judge."""
    paths = sorted(p for p in Path(results_dir).glob("*.json") if not p.name.startswith(NOT_FAMILY_PREFIXES))
    if not paths:
        raise ResultsError(f"no family results (*.json) in {results_dir}")
    judged, skipped = [], []
    for path in paths:
        results = read_results(path)
        try:
            judged.append((results, judge_family(results, design)))
        except NotJudgeable as reason:
            skipped.append(f"{path.name}: {reason}")
    return judged, skipped


def collect(results_dir: str | Path, design: BootstrapDesign = BootstrapDesign()) -> tuple[list[dict], list[str]]:
    """The verdicts of ``judged_families`` and the files skipped."""
    judged, skipped = judged_families(results_dir, design)
    return [verdict for _, verdict in judged], skipped


def fmt(value, digits: int = 3) -> str:
    """Numbers as text, the same on every machine: integers bare, others to ``digits`` significant figures."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(fmt(item, digits) for item in value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    return f"{value:.{digits}g}"


# --- tables -------------------------------------------------------------------------------------------------

def _has_kind(verdict: dict, toy: bool) -> bool:
    return any(is_known_truth(target.name) == toy for target in verdict["targets"])


def column_keys(verdicts: list[dict], toy: bool) -> list[tuple[str, str]]:
    """(family, target) of one kind, in file then target order."""
    return list(dict.fromkeys((v["family"], row["target"]) for v in verdicts for row in v["rows"]
                              if row.get("target") is not None and is_known_truth(row["target"]) == toy))


def choice_frame(verdicts: list[dict], toy: bool) -> pd.DataFrame:
    """Rows: selectors (every verdict row's selector, chance and other baselines included); columns: (family,
    target) of one kind; each cell the verdict row itself (None where a selector did not run)."""
    by_selector: dict[str, dict] = {}
    for verdict in verdicts:
        for row in verdict["rows"]:
            if row.get("target") is not None and is_known_truth(row["target"]) == toy:
                by_selector.setdefault(row["selector"], {})[(verdict["family"], row["target"])] = row
    keys = column_keys(verdicts, toy)
    if not keys:
        return pd.DataFrame()
    return pd.DataFrame([[cells.get(key) for key in keys] for cells in by_selector.values()],
                        index=list(by_selector), columns=pd.MultiIndex.from_tuples(keys))


def tally_frame(verdicts: list[dict], toy: bool) -> pd.DataFrame:
    """Per selector over the kind's targets: label, hits, judged, mean |steps| and mean regret; ranked by hits,
    then mean |steps|, then name."""
    tally = selector_tally(verdicts, toy)
    frame = pd.DataFrame([{"selector": name, "label": entry.get("label"), "hits": entry["hits"],
                           "judged": entry["judged"], "mean_steps": _mean(entry["steps"]),
                           "mean_regret": _mean(entry["regret"])} for name, entry in tally.items()])
    if frame.empty:
        return frame
    frame["rank_steps"] = frame["mean_steps"].fillna(math.inf)
    frame = frame.sort_values(["hits", "rank_steps", "selector"], ascending=[False, True, True], kind="stable")
    return frame.drop(columns="rank_steps").set_index("selector")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def cell_view(row: dict | None) -> dict:
    """What one table cell shows: the choice, its error and regret, the bootstrap's doubt, a colour class."""
    if row is None or (isinstance(row, float) and math.isnan(row)):
        return {"css": "absent", "main": "", "sub": "", "regret": "", "doubt": "", "title": "not run on this family"}
    steps = row.get("error_steps")
    censored = bool(row.get("censored"))
    if row.get("chosen_l0") is None and steps is None:
        return {"css": "none", "main": "none", "sub": "no decisive point", "regret": "", "doubt": "", "title": ""}
    if is_expectation(row):  # no single choice: the expected |steps| of a random pick
        main, sub = f"|{fmt(steps, 2)}|", "expected steps"
    else:
        main, sub = fmt(row["chosen_l0"]), "" if steps is None else _steps_text(steps)
    regret = "" if row.get("regret") is None else f"regret {fmt(row['regret'], 2)}"
    plausible = row.get("plausible_l0s") or []
    doubt = f"≈{fmt(min(plausible))}–{fmt(max(plausible))}" if len(plausible) > 1 else ""
    css = "censored" if censored else _step_class(steps)
    interval = row.get("interval_90")
    title = "; ".join(part for part in (
        f"90% interval {fmt(interval[0])}–{fmt(interval[1])}" if interval else "",
        f"point share {fmt(row['point_share'], 2)}" if row.get("point_share") is not None else "",
        "target at a grid end: censored, not counted" if censored else "") if part)
    return {"css": css, "main": main, "sub": sub, "regret": regret, "doubt": doubt, "title": title}


def _steps_text(steps: float) -> str:
    if float(steps).is_integer():
        return f"{int(steps):+d} step" + ("" if abs(steps) == 1 else "s")
    return f"{steps:+.2g} steps"


def is_expectation(row: dict) -> bool:
    """A row scored in expectation (the chance baseline): errors but no single choice."""
    return row.get("chosen_l0") is None and row.get("error_steps") is not None


def _step_class(steps) -> str:
    if steps is None:
        return "none"
    return STEP_CLASSES[min(int(round(abs(steps))), len(STEP_CLASSES) - 1)][0]


def group_view(verdicts: list[dict], toy: bool) -> dict | None:
    """One leaderboard table (toy or LLM kind) as the templates lay it out; None when no family has that kind."""
    frame, tally = choice_frame(verdicts, toy), tally_frame(verdicts, toy)
    if frame.empty:
        return None
    targets = {(v["family"], t.name): t for v in verdicts for t in v["targets"]}
    columns = [{"family": family, "target": "true L0" if target == TRUE_L0 else target,
                "target_l0": fmt(targets[(family, target)].l0, 4),
                "censored": bool(getattr(targets[(family, target)], "censored", False))}
               for family, target in frame.columns]
    rows = []
    for selector in [*tally.index, *(name for name in frame.index if name not in tally.index)]:
        entry = tally.loc[selector] if selector in tally.index else None
        rows.append({"selector": selector, "label": None if entry is None else entry["label"],
                     "cells": [cell_view(frame.at[selector, key]) for key in frame.columns],
                     "hits": "-" if entry is None else f"{fmt(entry['hits'], 2)}/{entry['judged']}",
                     "mean_steps": "-" if entry is None else fmt(entry["mean_steps"], 2),
                     "mean_regret": "-" if entry is None else fmt(entry["mean_regret"], 2)})
    return {"toy": toy, "columns": columns, "rows": rows,
            "families": list(dict.fromkeys(column["family"] for column in columns))}


def csv_text(verdicts: list[dict]) -> str:
    """Every verdict row, CSV_COLUMNS first, then any further scalar fields of the rows (sorted by name)."""
    records = []
    for verdict in verdicts:
        for row in verdict["rows"]:
            interval = row.get("interval_90") or [None, None]
            records.append({**row, "family": verdict["family"], "interval_90_low": interval[0],
                            "interval_90_high": interval[1]})
    extra = sorted({key for record in records for key, value in record.items()
                    if key not in CSV_COLUMNS and key != "interval_90" and not isinstance(value, dict)})
    frame = pd.DataFrame([{column: fmt(record.get(column), 6) for column in (*CSV_COLUMNS, *extra)}
                          for record in records], columns=[*CSV_COLUMNS, *extra])
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


# --- pages ---------------------------------------------------------------------------------------------------

def summary_lines(verdicts: list[dict]) -> list[str]:
    return [line for line in (summary_line(verdicts, toy=True), summary_line(verdicts, toy=False)) if line]


def neuronpedia_links(results: dict) -> list[dict]:
    """Members that sae-lens's registry lists with a Neuronpedia id: their id, nominal L0 and page."""
    links = []
    for member in results["family"].get("members", []):
        identity = member_identity(member.get("repo_id"), member.get("path"))
        if identity is not None and identity.neuronpedia_url:
            links.append({"id": member["id"], "l0": fmt(member.get("nominal_l0")), "url": identity.neuronpedia_url})
    return links


def family_view(results: dict, verdict: dict) -> dict:
    return {"name": verdict["family"], "description": verdict["description"],
            "plot": f"plots/{verdict['family']}.png", "bootstrap_unit": verdict["bootstrap_unit"],
            "no_target_reason": verdict["no_target_reason"], "neuronpedia": neuronpedia_links(results),
            "targets_note": verdict.get("targets_note"),
            "grid": fmt(verdict["grid"])}


def page_context(judged: list[tuple[dict, dict]], skipped: list[str]) -> dict:
    verdicts = [verdict for _, verdict in judged]
    return {"summaries": summary_lines(verdicts),
            "groups": [group for group in (group_view(verdicts, True), group_view(verdicts, False)) if group],
            "unscored": [family_view(r, v) for r, v in judged if not v["targets"]],
            "families": [family_view(r, v) for r, v in judged],
            "selectors": dict(item for v in verdicts for item in v["selectors"].items()),
            "step_classes": STEP_CLASSES, "skipped": skipped}


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("l0eval.publish", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html"]), keep_trailing_newline=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["md"] = lambda text: str(text).replace("|", "\\|")
    # a line may break after _ and - in long names (selectors, families, metric columns)
    env.filters["wbr"] = lambda text: Markup(str(escape(text)).replace("_", "_<wbr>").replace("-", "-<wbr>"))
    return env


def render(template: str, context: dict) -> str:
    return _environment().get_template(template).render(**context)


def write_leaderboard(results_dir: str | Path, out_dir: str | Path,
                      design: BootstrapDesign = BootstrapDesign()) -> list[Path]:
    from l0eval.atomic import write_text
    from l0eval.publish.plots import family_plot

    judged, skipped = judged_families(results_dir, design)
    context = page_context(judged, skipped)
    out = Path(out_dir)
    written = [write_text(out / "README.md", render("leaderboard.md.j2", context)),
               write_text(out / "leaderboard.csv", csv_text([verdict for _, verdict in judged])),
               write_text(out / "index.html", render("leaderboard.html.j2", context))]
    (out / "plots").mkdir(parents=True, exist_ok=True)
    written += [family_plot(verdict, results, out / "plots" / f"{path_component(verdict['family'])}.png")
                for results, verdict in judged]
    return written


def compare_text(verdicts: list[dict]) -> str:
    """`l0eval compare`: per family, each selector's choice beside the ground truth."""
    blocks = []
    for verdict in verdicts:
        title = f"family {verdict['family']}: {verdict['description']}"
        if verdict["no_target_reason"]:
            title += f"\nno ground truth: {verdict['no_target_reason']}"
        if verdict.get("targets_note"):
            title += f"\nground truth: {verdict['targets_note']}"
        frame = pd.DataFrame([{"target": row["target"] or "-", "target L0": fmt(row.get("target_l0"), 4),
                               "selector": row["selector"], "chosen L0": fmt(row["chosen_l0"]),
                               "90% interval": "-" if not row.get("interval_90") else
                               f"{fmt(row['interval_90'][0])}-{fmt(row['interval_90'][1])}",
                               "steps": "-" if row.get("error_steps") is None else f"{row['error_steps']:+g}",
                               "seed spread": fmt(row.get("seed_spread")),
                               "within 1": fmt(row.get("within_one")), "regret": fmt(row.get("regret"))}
                              for row in verdict["rows"]])
        blocks.append(f"{title}\n{frame.to_string(index=False)}")
    return "\n\n".join(blocks + summary_lines(verdicts))
