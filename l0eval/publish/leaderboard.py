"""`l0eval leaderboard`: regenerate leaderboard/ from every family result in results/.

Writes README.md (the tables), leaderboard.csv (one row per family, target and selector), index.html (a
static page with the tables and plots) and plots/<family>.png (each metric vs L0 on log axes, the ground
truth and every selector's choice with its bootstrap interval). Nothing in the output depends on the time
or the machine, so regenerating from the same results gives byte-identical files.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from l0eval.errors import ResultsError
from l0eval.results import read_results
from l0eval.selection.bootstrap import BootstrapDesign
from l0eval.selection.verdict import NotJudgeable, judge_family, selector_tally, summary_line

CSV_COLUMNS = ("family", "target", "target_l0", "selector", "chosen_l0", "interval_90_low", "interval_90_high",
               "point_share", "plausible_l0s", "error_l0", "error_steps", "within_one", "score", "best_score",
               "regret")

NOT_FAMILY_PREFIXES = ("bench_", "demo_")


def collect(results_dir: str | Path, design: BootstrapDesign = BootstrapDesign()) -> tuple[list[dict], list[str]]:
    """Verdicts for every family result in ``results_dir`` (sorted by file name; ``bench_*.json`` and
    ``demo_*.json`` are benchmarks and demos, not families), and one line for each file that has no L0
    sweep to judge."""
    paths = sorted(p for p in Path(results_dir).glob("*.json") if not p.name.startswith(NOT_FAMILY_PREFIXES))
    if not paths:
        raise ResultsError(f"no family results (*.json) in {results_dir}")
    verdicts, skipped = [], []
    for path in paths:
        try:
            verdicts.append(judge_family(read_results(path), design))
        except NotJudgeable as reason:
            skipped.append(f"{path.name}: {reason}")
    return verdicts, skipped


def fmt(value, digits: int = 3) -> str:
    """Numbers as text, the same on every machine: integers bare, others to ``digits`` significant figures."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    return f"{value:.{digits}g}"


def cell(row: dict) -> str:
    """One table cell: chosen L0, error in steps and regret; ``≈a–b`` when the bootstrap cannot tell the
    choice from other L0s (each picked in >= 5% of resamples)."""
    if row["chosen_l0"] is None:
        return "none"
    text = fmt(row["chosen_l0"])
    if row.get("target") is not None:
        steps = row["error_steps"]
        text += f" ({steps:+d}" + ("" if row["regret"] is None else f"; {fmt(row['regret'], 2)}") + ")"
    plausible = row.get("plausible_l0s") or []
    if len(plausible) > 1:
        text += f" ≈{fmt(min(plausible))}–{fmt(max(plausible))}"
    return text


def main_table(verdicts: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per (family, target), one column per selector (the union, in first-seen order)."""
    selectors = list(dict.fromkeys(name for v in verdicts for name in v["selectors"]))
    header = ["family", "target", "target L0", *selectors]
    rows = []
    for verdict in verdicts:
        by_target: dict = {}
        for row in verdict["rows"]:
            by_target.setdefault(row["target"], {})[row["selector"]] = row
        for target, cells in by_target.items():
            first = next(iter(cells.values()))
            rows.append([verdict["family"], target or "none", fmt(first.get("target_l0"), 4),
                         *(cell(cells[name]) if name in cells else "" for name in selectors)])
    return header, rows


def tally_table(verdicts: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["selector", "toy: within one step", "toy: mean |steps|", "toy: mean regret",
              "LLM targets: within one step", "LLM: mean |steps|", "LLM: mean regret"]
    tallies = [selector_tally(verdicts, toy=True), selector_tally(verdicts, toy=False)]
    names = list(dict.fromkeys(name for tally in tallies for name in tally))
    rows = []
    for name in names:
        row = [name]
        for tally in tallies:
            entry = tally.get(name)
            if entry is None:
                row += ["-", "-", "-"]
                continue
            row += [f"{entry['hits']}/{entry['judged']}", _mean_text(entry["steps"]), _mean_text(entry["regret"])]
        rows.append(row)
    return header, rows


def _mean_text(values: list[float]) -> str:
    return fmt(sum(values) / len(values), 2) if values else "-"


def summary_lines(verdicts: list[dict]) -> list[str]:
    return [line for line in (summary_line(verdicts, toy=True), summary_line(verdicts, toy=False)) if line]


def markdown(verdicts: list[dict], skipped: list[str]) -> str:
    lines = ["# L0 selection leaderboard", "",
             "Generated by `l0eval leaderboard` from `results/` (do not edit by hand).", ""]
    lines += [f"**{line}**" for line in summary_lines(verdicts)] + [""]
    lines += ["## Choices", "",
              "Cell: chosen L0 (error in L0 steps of the family's grid; regret = family's best score minus the "
              "chosen SAE's). `≈a–b`: the bootstrap (evaluation batches and seed replicates) cannot tell the "
              "choice apart from other L0s in a..b. `none`: the selector found no decisive point.", ""]
    lines += _markdown_table(*main_table(verdicts))
    lines += ["", "## Selectors across families", ""] + _markdown_table(*tally_table(verdicts))
    lines += ["", "## Families", ""]
    for verdict in verdicts:
        lines.append(f"- **{verdict['family']}**: {verdict['description']}. "
                     + (f"No target: {verdict['no_target_reason']}. " if verdict["no_target_reason"] else "")
                     + (f"Ground truth: {verdict['targets_note']}. " if verdict.get("targets_note") else "")
                     + f"Bootstrap over {verdict['bootstrap_unit']}. "
                     + f"![{verdict['family']}](plots/{verdict['family']}.png)")
    lines += ["", "## Selectors", ""]
    descriptions = dict(item for v in verdicts for item in v["selectors"].items())
    lines += [f"- `{name}`: {text}" for name, text in descriptions.items()]
    if skipped:
        lines += ["", "Not judged: " + "; ".join(skipped)]
    return "\n".join(lines) + "\n"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(values):
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows)]


def csv_text(verdicts: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for verdict in verdicts:
        for row in verdict["rows"]:
            interval = row.get("interval_90") or [None, None]
            values = {**row, "family": verdict["family"], "interval_90_low": interval[0],
                      "interval_90_high": interval[1],
                      "plausible_l0s": " ".join(fmt(v) for v in row.get("plausible_l0s", []))}
            writer.writerow([fmt(values.get(column), 6) for column in CSV_COLUMNS])
    return buffer.getvalue()


def html_page(verdicts: list[dict], skipped: list[str]) -> str:
    def table(header, rows, css_class):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
        return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    summaries = "".join(f'<p class="summary">{html.escape(line)}</p>' for line in summary_lines(verdicts))
    figures = "".join(
        f'<figure id="{html.escape(v["family"])}"><img src="plots/{html.escape(v["family"])}.png" '
        f'alt="{html.escape(v["family"])} metrics vs L0"><figcaption>{html.escape(v["family"])}: '
        f'{html.escape(v["description"])}</figcaption></figure>' for v in verdicts)
    skipped_html = f"<p>Not judged: {html.escape('; '.join(skipped))}</p>" if skipped else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>L0 selection leaderboard</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; }}
th {{ background: #eee; }}
.summary {{ font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>L0 selection leaderboard</h1>
{summaries}
<h2>Choices</h2>
<p>Cell: chosen L0 (error in L0 steps; regret). &asymp;a&ndash;b: indistinguishable from other L0s in a..b
under the bootstrap.</p>
{table(*main_table(verdicts), "choices")}
<h2>Selectors across families</h2>
{table(*tally_table(verdicts), "tally")}
<h2>Families</h2>
{figures}
{skipped_html}
<script>
// a marker for headless checks: how many images decoded with a real size, once everything has loaded
window.addEventListener("load", function () {{
  var images = Array.from(document.images);
  var loaded = images.filter(function (img) {{ return img.complete && img.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
}});
</script>
</body></html>
"""


def write_leaderboard(results_dir: str | Path, out_dir: str | Path,
                      design: BootstrapDesign = BootstrapDesign()) -> list[Path]:
    from l0eval.publish.plots import family_plot

    verdicts, skipped = collect(results_dir, design)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    written = [_write(out / "README.md", markdown(verdicts, skipped)),
               _write(out / "leaderboard.csv", csv_text(verdicts)),
               _write(out / "index.html", html_page(verdicts, skipped))]
    written += [family_plot(verdict, out / "plots" / f"{verdict['family']}.png") for verdict in verdicts]
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def compare_text(verdicts: list[dict]) -> str:
    """`l0eval compare`: per family, each selector's choice beside the ground truth."""
    import pandas as pd

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
                               "steps": "-" if row.get("error_steps") is None else f"{row['error_steps']:+d}",
                               "within 1": fmt(row.get("within_one")), "regret": fmt(row.get("regret"))}
                              for row in verdict["rows"]])
        blocks.append(f"{title}\n{frame.to_string(index=False)}")
    return "\n\n".join(blocks + summary_lines(verdicts))
