"""What a dashboard page shows, gathered from the engine's memory and the store: never from Label Studio.

Every figure here was computed elsewhere (the trainer, the loop, the quality and standing reports); this
module only selects, orders and links them, so a page costs a few SQL reads whatever the pool size.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from suggest.engine import Engine

_READS: dict[tuple[int, str, str], tuple[int, object]] = {}  # (store, project, what) -> (history head, value)

REVIEW_ROWS = 50  # suspects listed on a page; `suggest quality` and the review tab hold all of them
NEXT_ROWS = 10


def task_link(ls_url: str | None, project_id: str, task_id: int | None) -> str | None:
    """The task in Label Studio's data manager, or None when there is no http(s) URL to point at."""
    if not ls_url or task_id is None:
        return None
    parts = urlsplit(ls_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{ls_url.rstrip('/')}/projects/{quote(str(project_id))}/data?task={int(task_id)}"


def overview(engine: Engine) -> list[dict]:
    """One row per project for the project list, numeric ids in order."""
    metrics = engine.metrics()["projects"]
    rows = []
    for pid in sorted(metrics, key=lambda p: (not p.isdigit(), int(p) if p.isdigit() else 0, p)):
        m = metrics[pid]
        quality = m.get("quality") or {}
        rows.append({
            "project_id": pid,
            "labels": m.get("labels", 0),
            "model_version": m.get("model_version"),
            "mode": m.get("mode"),
            "versions": len(m.get("versions", [])),
            "training": bool(m.get("training")),
            "suspects": (quality.get("counts") or {}).get("suspects"),
            "loop": (m.get("loop") or {}).get("enabled", False),
            "reachable": (m.get("label_studio") or {}).get("reachable"),
            "error": m.get("last_error") or (m.get("label_studio") or {}).get("error"),
            "standing": _headline(m.get("standing")),
        })
    return rows


def project_view(engine: Engine, project_id: str) -> dict:
    """Everything the project page draws. Raises the engine's UnknownProject for an unknown id."""
    started = time.perf_counter()
    m = engine.metrics(project_id)["projects"][project_id]
    store = engine.store
    ls_url = (m.get("label_studio") or {}).get("url")
    report = store.quality(project_id) or {}
    suspects = list(report.get("suspects") or [])[:REVIEW_ROWS]
    loop = dict(m.get("loop") or {})
    next_ids = list(loop.get("next_tasks") or [])[:NEXT_ROWS]
    texts = store.task_texts(project_id, [s["task_id"] for s in suspects] + next_ids)
    for t, data in store.task_data(project_id, [t for t in next_ids if t not in texts]).items():
        texts[t] = _shown(data)
    for s in suspects:
        s["link"] = task_link(ls_url, project_id, s["task_id"])
        s["text"] = texts.get(s["task_id"], "")
    view = {
        "project_id": project_id,
        "metrics": m,
        "ls_url": ls_url,
        "timeline": _per_head(store, project_id, "timeline", store.label_timeline),
        "annotators": _per_head(store, project_id, "annotators", store.annotator_counts),
        "versions": m.get("versions", []),
        "standing": m.get("standing") or {},
        "agreement": report.get("agreement") or {},
        "quality": {"counts": report.get("counts") or {}, "model_version": report.get("model_version"),
                    "computed_at": report.get("computed_at"), "error": report.get("error"),
                    "label_errors": report.get("label_errors") or {}},
        "suspects": suspects,
        "next": [{"task_id": t, "link": task_link(ls_url, project_id, t), "text": texts.get(t, "")}
                 for t in next_ids],
        "loop": loop,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    view["gather_seconds"] = round(time.perf_counter() - started, 4)
    return view


def _shown(data: dict, limit: int = 300) -> str:
    """What a task holds, for a list: its first text value (an image's URL is shown as it is)."""
    value = next((v for v in data.values() if isinstance(v, str) and v), "")
    return value[:limit]


def _per_head(store, project_id: str, what: str, read):
    """`read(project_id)`, recomputed only when the project's annotation history moved (it scans every
    annotation; a page refresh every 15 s at 100,000 annotations should not)."""
    head = store.history_head(project_id)
    key = (id(store), project_id, what)
    held = _READS.get(key)
    if held is None or held[0] != head:
        held = _READS[key] = (head, read(project_id))
    return held[1]


def _headline(standing: dict | None) -> str | None:
    """A one-line accuracy figure for the project list: the unbiased audit estimate first."""
    if not standing:
        return None
    for key in ("audit", "out_of_fold", "agreement"):
        est = (standing.get("estimates") or {}).get(key) or {}
        if est.get("estimate") is not None:
            return f"{est['estimate']:.3f} ({key.replace('_', ' ')})"
    return None
