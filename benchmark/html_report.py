"""``results/<dataset>/report.html``: one self-contained page per benchmark run.

The page is built from what the run left on disk (``summary.csv``, the PNG plots next to it) and
from the data dir's tables, so it can be re-rendered without re-running anything. Plots are embedded
as base64 data URIs: the file can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, select_autoescape


@dataclass(frozen=True)
class DataSummary:
    """Counts a reader needs to judge a result: size, coverage, censoring and failures."""

    tracks: int
    songs: int
    regions: list[str]
    periods: list[str]
    pairs: int
    chart_weeks: int
    left_censored: int
    incomplete_horizon: int
    tracks_with_audio: int
    clips: int
    extraction_failures: int

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("tracks", f"{self.tracks:,}"),
            ("songs (versions grouped)", f"{self.songs:,}"),
            ("regions", f"{len(self.regions)}: {', '.join(self.regions)}"),
            ("periods", ", ".join(self.periods)),
            ("chart dates", f"{self.chart_weeks:,}"),
            ("(track, region, period) targets", f"{self.pairs:,}"),
            ("left-censored (on the first chart of the data)", f"{self.left_censored:,}"),
            ("horizon not covered by the data", f"{self.incomplete_horizon:,}"),
            ("tracks with audio / clips", f"{self.tracks_with_audio:,} / {self.clips:,}"),
            ("extraction failures", f"{self.extraction_failures:,}"),
        ]


def summarize_data(data_dir: Path) -> DataSummary:
    """Count tracks, songs, regions, periods, censoring and extraction failures in a data dir.

    Parameters
    ----------
    data_dir : Path
        A data dir holding at least ``streams.parquet``, ``catalog.parquet`` and ``popularity.parquet``.

    Returns
    -------
    DataSummary
    """
    data_dir = Path(data_dir)
    streams = pd.read_parquet(
        data_dir / "streams.parquet", columns=["region", "period", "chart_date"]
    )
    catalog = pd.read_parquet(data_dir / "catalog.parquet")
    popularity = pd.read_parquet(
        data_dir / "popularity.parquet", columns=["left_censored", "complete_horizon"]
    )
    clips_path = data_dir / "clips.parquet"
    clips = (
        pd.read_parquet(clips_path) if clips_path.exists() else pd.DataFrame(columns=["track_id"])
    )
    errors_path = data_dir / "extract_errors.parquet"
    failures = len(pd.read_parquet(errors_path)) if errors_path.exists() else 0
    return DataSummary(
        tracks=len(catalog),
        songs=int(catalog["song_id"].nunique()),
        regions=sorted(streams["region"].unique().tolist()),
        periods=sorted(streams["period"].unique().tolist()),
        pairs=len(popularity),
        chart_weeks=int(streams["chart_date"].nunique()),
        left_censored=int(popularity["left_censored"].sum()),
        incomplete_horizon=int((~popularity["complete_horizon"].astype(bool)).sum()),
        tracks_with_audio=int(clips["track_id"].nunique()),
        clips=len(clips),
        extraction_failures=failures,
    )


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
 h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
 table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
 th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right; }
 th:first-child, td:first-child, td.text { text-align: left; }
 tr.reference td { color: #666; font-style: italic; }
 td.better { background: #e6f4ea; } td.worse { background: #fce8e6; }
 figure { display: inline-block; margin: .5rem; vertical-align: top; }
 figure img { max-width: 520px; border: 1px solid #eee; }
 figcaption { font-size: .8rem; color: #555; }
 .note { color: #555; font-size: .9rem; }
 pre { background: #f6f8fa; padding: .75rem; overflow-x: auto; font-size: .8rem; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="note">Generated {{ generated }}{% if commit %} from commit <code>{{ commit }}</code>{% endif %}.
Every value is a point estimate with its bootstrap 95% interval over songs. &Delta; is the paired-bootstrap
difference against the best classical model ({{ best_classical or "n/a" }}): green when its interval lies above 0
(better), red when below.</p>

<h2 id="results">Comparison</h2>
{% for target, table in tables.items() %}
<h3>{{ target }}</h3>
<table class="results" data-target="{{ target }}">
<tr><th>model</th>{% for metric in table.metrics %}<th>{{ metric }}</th>{% endfor %}</tr>
{% for row in table.rows %}
<tr class="{{ row.kind }}"><td>{{ row.model }}</td>{% for cell in row.cells %}<td class="{{ cell.css }}">{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endfor %}

<h2 id="plots">Plots</h2>
{% for plot in plots %}
<figure><img alt="{{ plot.name }}" src="data:image/png;base64,{{ plot.data }}"><figcaption>{{ plot.name }}</figcaption></figure>
{% endfor %}

<h2 id="data">Data</h2>
<table>{% for key, value in data_rows %}<tr><td>{{ key }}</td><td class="text">{{ value }}</td></tr>{% endfor %}</table>

{% if timings %}
<h2 id="timings">Stage times</h2>
<table><tr><th>stage</th><th>seconds</th><th>status</th></tr>
{% for t in timings %}<tr><td>{{ t.stage }}</td><td>{{ "%.1f"|format(t.seconds) }}</td><td class="text">{{ t.status }}</td></tr>{% endfor %}
</table>
{% endif %}

<h2 id="config">Configuration</h2>
<pre>{{ config_text }}</pre>
</body></html>
"""


def _format_cell(value: float, low: float, high: float) -> str:
    if pd.isna(value):
        return "–"
    if pd.isna(low) or pd.isna(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _tables(summary: pd.DataFrame) -> dict[str, dict]:
    """Pivot the tidy summary (model x target x metric) into one display table per target."""
    tables: dict[str, dict] = {}
    for target, part in summary.groupby("target", sort=False):
        metrics = list(dict.fromkeys(part["metric"]))
        rows = []
        for model, rows_of_model in part.groupby("model", sort=False):
            by_metric = rows_of_model.set_index("metric")
            cells = []
            for metric in metrics:
                if metric not in by_metric.index:
                    cells.append({"text": "–", "css": ""})
                    continue
                r = by_metric.loc[metric]
                text = _format_cell(r["value"], r.get("ci_low"), r.get("ci_high"))
                css = ""
                is_reference = str(r.get("reference", "")) == str(model)
                if not is_reference and pd.notna(r.get("diff")) and pd.notna(r.get("diff_ci_low")):
                    text += f"<br><small>&Delta; {r['diff']:+.3f} [{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}]</small>"
                    if r["diff_ci_low"] > 0:
                        css = "better" if bool(r.get("maximize", True)) else "worse"
                    elif r["diff_ci_high"] < 0:
                        css = "worse" if bool(r.get("maximize", True)) else "better"
                cells.append({"text": text, "css": css})
            kind = str(rows_of_model["kind"].iloc[0]) if "kind" in rows_of_model else "model"
            rows.append({"model": html.escape(str(model)), "cells": cells, "kind": kind})
        tables[str(target)] = {"metrics": metrics, "rows": rows}
    return tables


def write_html_report(
    results_dir: Path,
    data_dir: Path,
    *,
    title: str,
    config: Mapping[str, object] | None = None,
    timings: list[Mapping[str, object]] | None = None,
    commit: str | None = None,
    best_classical: str | None = None,
) -> Path:
    """Render ``results_dir/report.html`` from ``summary.csv``, the PNG plots and the data dir.

    Parameters
    ----------
    results_dir : Path
        ``results/<dataset>/``, holding ``summary.csv`` and the plots.
    data_dir : Path
        The data dir the benchmark ran on (for the data summary).
    title : str
        Page heading.
    config : Mapping, optional
        The run's configuration, shown verbatim.
    timings : list of Mapping, optional
        ``{"stage", "seconds", "status"}`` per pipeline stage.
    commit : str, optional
        Git commit of the code that produced the results.
    best_classical : str, optional
        Name of the reference model of the paired comparison.

    Returns
    -------
    Path
        The written ``report.html``.
    """
    results_dir = Path(results_dir)
    summary = pd.read_csv(results_dir / "summary.csv")
    plots = [
        {"name": p.stem.replace("_", " "), "data": base64.b64encode(p.read_bytes()).decode("ascii")}
        for p in sorted(results_dir.glob("*.png"))
    ]
    env = Environment(autoescape=select_autoescape(default=True))
    template = env.from_string(_TEMPLATE)
    tables = _tables(summary)
    # cells carry a little markup of our own (interval line); everything user-supplied is escaped above
    from markupsafe import Markup

    for table in tables.values():
        for row in table["rows"]:
            for cell in row["cells"]:
                cell["text"] = Markup(cell["text"])
    page = template.render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=commit,
        best_classical=best_classical,
        tables=tables,
        plots=plots,
        data_rows=summarize_data(data_dir).rows(),
        timings=list(timings or []),
        config_text=json.dumps(dict(config or {}), indent=2, default=str),
    )
    out = results_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
