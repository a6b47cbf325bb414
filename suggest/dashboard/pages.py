"""HTML for the dashboard: Jinja2 templates from templates/, autoescaped, charts inline as SVG.

Pages refresh themselves (a meta refresh, so it works with scripts off) and lay out in one column on a
phone and in a grid on a laptop. Every number comes from `data.py`; nothing here computes a figure.
"""

from __future__ import annotations

from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from suggest.dashboard.svg import Series, bar_chart, line_chart

REFRESH_SECONDS = 15

_env = Environment(loader=PackageLoader("suggest.dashboard", "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))
_env.globals.update(fmt=lambda x: "-" if x is None else f"{x:.3f}")


def _template(name: str):
    return _env.get_template(f"{name}.html")


def render_index(projects: list[dict], *, root: str, generated_at: str, refresh: int = REFRESH_SECONDS) -> str:
    return _template("index").render(title="projects", projects=projects, root=root, generated_at=generated_at,
                                     refresh=refresh)


def render_project(view: dict, *, root: str, refresh: int = REFRESH_SECONDS) -> str:
    standing = view.get("standing") or {}
    headline, headline_name = _headline(standing)
    stop_text, stop_detail, stop_explain, kappa_svg = _stopping(standing)
    curve_svg, curve_note = _curve(view)
    drift_rows, drift_empty = _drift(standing)
    return _template("project").render(
        title=f"project {view['project_id']}", v=view, root=root, generated_at=view["generated_at"], refresh=refresh,
        headline=headline, headline_name=headline_name, stop_text=stop_text, stop_detail=stop_detail,
        stop_explain=stop_explain, kappa_svg=kappa_svg, curve_svg=curve_svg, curve_note=curve_note,
        timeline_svg=_timeline(view["timeline"]), drift_rows=drift_rows, drift_empty=drift_empty,
        annotators_svg=Markup(bar_chart([(_who(w), float(n)) for w, n in view["annotators"][:20]],
                                        title="annotations per annotator")),
        figures=_agreement_figures, interval=_interval)


def _who(annotator: int | None) -> str:
    return "unknown" if annotator is None else f"annotator {annotator}"


def _interval(figure: dict) -> str:
    ci = figure.get("ci95")
    if ci:
        return f"{ci[0]:.3f} - {ci[1]:.3f}"
    return figure.get("na") or "too few tasks"


def _agreement_figures(entry: dict) -> list[tuple[str, dict]]:
    """(name, figure) rows for one control's agreement entry, whatever its kind."""
    rows: list[tuple[str, dict]] = []
    for key in ("krippendorff_alpha", "fleiss_kappa", "span_f1"):
        if isinstance(entry.get(key), dict):
            rows.append((key.replace("_", " "), entry[key]))
    for label, figs in (entry.get("per_label") or {}).items():
        rows.append((f"alpha: {label}", figs["krippendorff_alpha"]))
    for pair in entry.get("pairs") or []:
        a, b = pair["annotators"]
        fig = pair.get("cohen_kappa") or pair.get("span_f1")
        if isinstance(fig, dict):
            rows.append((f"{_who(a)} vs {_who(b)}", fig))
    for row in entry.get("vs_consensus") or []:
        fig = row.get("agreement") or row.get("span_f1")
        if isinstance(fig, dict):
            rows.append((f"{_who(row['annotator'])} vs consensus", fig))
    return rows


def _timeline(points: list[tuple[str, int]]) -> Markup:
    if not points:
        return Markup(line_chart([], title="labels over time", x_label="time", y_label="annotations"))
    stamps = [_epoch(at) for at, _ in points]
    series = Series("annotations", [(t, float(n)) for t, (_, n) in zip(stamps, points, strict=True)])
    same_day = len({at[:10] for at, _ in points}) == 1
    labels = {t: (at[11:16] if same_day else at[5:10]) for t, (at, _) in zip(stamps, points, strict=True)}
    x_label = f"time (UTC, {points[0][0][:10]})" if same_day else "date (UTC)"
    return Markup(line_chart([series], title="labels over time", x_label=x_label, y_label="annotations",
                             x_labels=labels, y_range=(0.0, float(points[-1][1]))))


def _epoch(at: str) -> float:
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


ESTIMATES = {"audit": "audit slice (unbiased)", "out_of_fold": "out-of-fold", "agreement": "suggestion agreement"}


def _estimate(entry: dict | None) -> tuple[float, float | None, float | None] | None:
    """(value, low, high) of a standing estimate, or None when it has no value yet."""
    if not isinstance(entry, dict) or entry.get("estimate") is None:
        return None
    return float(entry["estimate"]), entry.get("low"), entry.get("high")


def _headline(standing: dict) -> tuple[str | None, str]:
    """The best available accuracy estimate: the audit slice (unbiased) first, then out-of-fold."""
    for key in ESTIMATES:
        est = _estimate((standing.get("estimates") or {}).get(key))
        if est is not None:
            value, low, high = est
            band = f", 95% {low:.3f}-{high:.3f}" if low is not None and high is not None else ""
            return f"{value:.3f}", ESTIMATES[key] + band
    return None, "after the first retrain"


def _curve(view: dict) -> tuple[Markup, str]:
    """Accuracy estimates per version against labels held, each with its 95% interval as a band."""
    points = (view.get("standing") or {}).get("learning_curve") or []
    series: dict[str, Series] = {}
    for point in points:
        x = point.get("labels")
        for key, name in ESTIMATES.items():
            est = _estimate(point.get(key))
            if x is None or est is None:
                continue
            s = series.setdefault(key, Series(name, [], [], dashed=key == "agreement"))
            s.points.append((float(x), est[0]))  # type: ignore[attr-defined]
            if est[1] is not None and est[2] is not None:
                s.band.append((float(x), float(est[1]), float(est[2])))  # type: ignore[attr-defined]
    note = "" if series else "The curve starts after the first trained version."
    if "agreement" in series:
        note += (" Suggestion agreement is biased low: the queue serves the hardest tasks first; the audit slice "
                 "is the unbiased figure.")
    return Markup(line_chart(list(series.values()), title="learning curve", x_label="labels", y_label="accuracy",
                             y_range=(0.0, 1.0))), note.strip()


def _stopping(standing: dict) -> tuple[str, str, str, Markup]:
    stop = standing.get("stopping") or {}
    points = [(float(p["labels"]), float(p["kappa"])) for p in standing.get("learning_curve") or []
              if p.get("kappa") is not None and p.get("labels") is not None]
    svg = Markup(line_chart([Series("kappa vs previous version", points)], title="stabilizing predictions",
                            x_label="labels", y_label="Cohen's kappa", y_range=(0.0, 1.0)))
    if not stop:
        return "-", "after two trained versions", "Stabilizing predictions: computed after each version.", svg
    text = "stable" if stop.get("stable") else "not yet"
    kappa = stop.get("kappa")
    detail = (f"kappa {kappa:.3f}, " if kappa is not None else "") + f"{stop.get('consecutive', 0)} in a row"
    explain = (stop.get("rule") or "") + "."
    if stop.get("na"):
        explain += f" {stop['na']}."
    gain = (stop.get("expected_gain_next_100") or {}).get("gain")
    if gain is not None:
        explain += f" Expected accuracy gain from the next 100 labels, read off the curve: {gain:+.3f}."
    return text, detail, explain, svg


def _drift(standing: dict) -> tuple[list[dict], str]:
    drift = standing.get("drift") or {}
    rows = []
    for name, check in drift.items():
        if not isinstance(check, dict):
            continue
        if check.get("na"):
            detail = f"n/a: {check['na']}"
        else:
            detail = f"{check.get('test', '')}, p = {check.get('p_value')}"
        rows.append({"name": name.replace("_", " "), "flagged": bool(check.get("flagged")), "detail": detail})
    return rows, "Drift checks run after each version once enough tasks arrive."


__all__ = ["REFRESH_SECONDS", "render_index", "render_project"]
