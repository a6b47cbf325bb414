"""Everything Label Studio: label configs, task and annotation JSON, predictions, the REST client.

Label Studio JSON never travels past this module: the engine receives `Schema`, `Item` and
`Label` objects and hands back `Prediction`s. The shapes here are the ones Label Studio 1.23
really sends (observed on a live server), not the ones its docs suggest.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any

import httpx

from suggest.schema import BadInput, Item, Label, Prediction, Schema, SchemaError

log = logging.getLogger(__name__)

TEXT_OBJECTS = {"text", "hypertext", "paragraphs"}
SUPPORTED = "a <Choices> control (single choice) on a <Text> object, e.g. " \
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">' \
    '<Choice value="A"/><Choice value="B"/></Choices></View>'


# label config ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def parse_config(label_config: str) -> Schema:
    """The first control this engine can serve; raises SchemaError naming what it supports."""
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(label_config, str) or not label_config.strip():
        raise SchemaError(f"the label config is empty; suggest serves {SUPPORTED}")
    try:
        interface = LabelInterface(label_config)
    except Exception as exc:  # the SDK raises several types for broken XML
        raise SchemaError(
            f"the label config is not valid Label Studio XML ({exc}); suggest serves {SUPPORTED}"
        ) from exc
    objects = {obj.name: obj for obj in interface.objects}
    found: list[Schema] = []
    seen: list[str] = []
    for control in interface.controls:
        targets = [objects.get(name) for name in (control.to_name or [])]
        target = targets[0] if targets else None
        kind = f"<{control.tag}> on <{target.tag if target else '?'}>"
        seen.append(kind)
        if control.tag.lower() != "choices" or target is None or target.tag.lower() not in TEXT_OBJECTS:
            continue
        if str(control.attr.get("choice", "single")).lower() == "multiple":
            continue
        labels = list(dict.fromkeys(control.labels))
        if len(labels) < 2:
            continue
        value = str(target.attr.get("value", ""))
        if not value.startswith("$") or len(value) < 2:
            continue
        hints = {
            label: str(tag.attr["hint"])
            for label, tag in (getattr(control, "labels_attrs", None) or {}).items()
            if isinstance(getattr(tag, "attr", None), dict) and tag.attr.get("hint")
        }
        found.append(Schema(control.name, target.name, value[1:], tuple(labels), target.tag.lower(), False, hints))
    if not found:
        has = ", ".join(seen) or "no control tags"
        raise SchemaError(f"this label config has {has}; suggest serves {SUPPORTED}")
    if len(found) > 1:
        log.info("config has %d classification controls; serving %r, ignoring the others",
                 len(found), found[0].from_name)
    return found[0]


def validate_predictions(label_config: str, results: list[dict]) -> list[str]:
    """Problems label-studio-sdk finds in prediction results (empty list: all valid)."""
    from label_studio_sdk.label_interface import LabelInterface

    interface = LabelInterface(label_config)
    problems = []
    for i, res in enumerate(results):
        if not interface.validate_prediction(res):
            problems.append(f"result {i} does not validate: {res}")
    return problems


# ids ------------------------------------------------------------------------------------------


def project_key(value: Any) -> str:
    """Label Studio's project reference in any of its shapes -> our key, the project id as text.

    `/setup` and `/predict` send "5.1795257467" (id.created-at), webhooks send the project object
    or its id.
    """
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool) or value is None:
        raise BadInput("the request names no project (expected 'project': '<id>.<timestamp>' or an id)")
    if isinstance(value, int):
        return str(value)
    text = str(value).strip()
    head = text.split(".", 1)[0]
    if not head.isdigit():
        raise BadInput(f"project {text!r} is not a Label Studio project reference like '5' or '5.1795257467'")
    return str(int(head))


# tasks and annotations ------------------------------------------------------------------------


def task_item(task: Any, schema: Schema) -> Item:
    """The text a task asks to classify; BadInput names what is missing."""
    if not isinstance(task, dict):
        raise BadInput(f"a task must be an object, got {type(task).__name__}")
    task_id = task.get("id")
    where = f"task {task_id}" if task_id is not None else "task"
    data = task.get("data")
    if not isinstance(data, dict):
        raise BadInput(f"{where} has no 'data' object")
    if schema.value_key not in data:
        raise BadInput(f"{where}: data has no field {schema.value_key!r} (the config reads ${schema.value_key})")
    text = data[schema.value_key]
    if not isinstance(text, str):
        raise BadInput(f"{where}: data.{schema.value_key} must be text, got {type(text).__name__}")
    if not text.strip():
        raise BadInput(f"{where}: data.{schema.value_key} is empty")
    return Item(text=text, task_id=task_id if isinstance(task_id, int) else None)


def annotation_label(annotation: Any, task: Any, schema: Schema) -> Label | None:
    """The label one annotation gives its task, or None when it gives none (cancelled, skipped, empty).

    Raises BadInput for a label that is not in the config or a task without usable text.
    """
    if not isinstance(annotation, dict):
        raise BadInput(f"annotation must be an object, got {type(annotation).__name__}")
    ann_id = annotation.get("id")
    if not isinstance(ann_id, int) or isinstance(ann_id, bool):
        raise BadInput("annotation has no integer 'id'")
    if annotation.get("was_cancelled"):
        return None
    choice = _first_choice(annotation.get("result"), schema)
    if choice is None:
        return None
    schema.check_label(choice)
    item = task_item(task, schema)
    if item.task_id is None:
        raise BadInput(f"annotation {ann_id}: its task has no integer 'id'")
    return Label(
        task_id=item.task_id,
        annotation_id=ann_id,
        label=choice,
        text=item.text,
        ground_truth=bool(annotation.get("ground_truth")),
        updated_at=str(annotation.get("updated_at") or annotation.get("created_at") or ""),
    )


def _first_choice(result: Any, schema: Schema) -> str | None:
    if not isinstance(result, list):
        return None
    for region in result:
        if not isinstance(region, dict) or region.get("from_name") != schema.from_name:
            continue
        value = region.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list) and choices:
            if not isinstance(choices[0], str):
                raise BadInput(f"annotation choices must be text, got {choices[0]!r}")
            return choices[0]
    return None


def annotation_ids(payload: Any) -> list[int]:
    """Ids from an ANNOTATIONS_DELETED event: {"annotations": [{"id": 2}, ...]}."""
    items = payload.get("annotations") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise BadInput("ANNOTATIONS_DELETED needs 'annotations': [{'id': ...}]")
    ids = [a.get("id") for a in items if isinstance(a, dict)]
    if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise BadInput("ANNOTATIONS_DELETED needs integer annotation ids")
    return ids


def task_ids(payload: Any) -> list[int]:
    """Ids from a TASKS_DELETED event: {"tasks": [{"id": 63}, ...]}."""
    items = payload.get("tasks") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return []
    return [t["id"] for t in items if isinstance(t, dict) and isinstance(t.get("id"), int)]


# predictions ----------------------------------------------------------------------------------


def prediction_json(pred: Prediction, schema: Schema) -> dict:
    """One task's entry in a /predict reply."""
    return {
        "result": [
            {
                "from_name": schema.from_name,
                "to_name": schema.to_name,
                "type": "choices",
                "value": {"choices": [pred.label]},
                "score": _finite(pred.probability),
            }
        ],
        "score": _finite(pred.score),
        "model_version": pred.model_version,
    }


def empty_prediction(model_version: str) -> dict:
    """The entry for a task we could not read: keeps `results` aligned with `tasks`."""
    return {"result": [], "score": 0.0, "model_version": model_version}


def _finite(x: float) -> float:
    x = float(x)
    return round(min(max(x, 0.0), 1.0), 6) if math.isfinite(x) else 0.0


# REST client ----------------------------------------------------------------------------------


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused a call; the message says which and why."""


class LabelStudioClient:
    """The few REST calls suggest makes, with either kind of Label Studio token.

    A legacy token is sent as `Token <key>`. A personal access token (a JWT refresh token) is
    exchanged at /api/token/refresh for a 5-minute access token, sent as `Bearer`, and renewed
    before it expires: the 401s users hit with the reference backend come from mixing these up.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._token = token.strip()
        self._access: tuple[str, float] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _auth_header(self) -> dict[str, str]:
        if self._token.count(".") != 2:  # not a JWT: the legacy token
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or self._access[1] < time.monotonic():
            resp = self._http.post("/api/token/refresh/", json={"refresh": self._token})
            if resp.status_code != 200:
                raise LabelStudioError(f"Label Studio refused the personal access token ({resp.status_code})")
            self._access = (resp.json()["access"], time.monotonic() + 240)
        return {"Authorization": f"Bearer {self._access[0]}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, headers=self._auth_header(), **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(self._redact(f"cannot reach Label Studio at {self.url}: {exc}")) from None
        if resp.status_code >= 400:
            raise LabelStudioError(self._redact(
                f"Label Studio answered {resp.status_code} to {method} {path}: {resp.text[:300]}"
            ))
        return resp

    def _redact(self, text: str) -> str:
        """Errors end up in logs and /metrics: they never carry a token (a proxy may echo it back)."""
        for secret in (self._token, self._access[0] if self._access else None):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def label_config(self, project_id: str) -> str | None:
        config = self.request("GET", f"/api/projects/{project_id}").json().get("label_config")
        return config if isinstance(config, str) else None

    def tasks_by_id(self, project_id: str, ids: list[int], *, chunk: int = 200) -> list[dict]:
        """The named tasks with their annotations (export filtered by id, in chunks)."""
        wanted = set(ids)
        found: list[dict] = []
        ordered = sorted(wanted)
        for start in range(0, len(ordered), chunk):
            found += self.request("GET", f"/api/projects/{project_id}/export", params={
                "exportType": "JSON", "download_all_tasks": "true", "ids[]": ordered[start : start + chunk],
            }).json()
        return [t for t in found if isinstance(t, dict) and t.get("id") in wanted]

    def labeled_tasks(self, project_id: str) -> list[dict]:
        """Every task of the project that has annotations, with its annotations."""
        return self._export(project_id, all_tasks=False)

    def all_tasks(self, project_id: str) -> list[dict]:
        """Every task of the project, with data and annotations, in one call."""
        return self._export(project_id, all_tasks=True)

    def _export(self, project_id: str, *, all_tasks: bool) -> list[dict]:
        resp = self.request(
            "GET", f"/api/projects/{project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true" if all_tasks else "false"},
        )
        tasks = resp.json()
        if not isinstance(tasks, list):
            raise LabelStudioError(f"unexpected export from Label Studio: {str(tasks)[:200]}")
        return tasks

    def import_predictions(self, project_id: str, rows: list[dict], *, chunk: int = 2000) -> int:
        """Bulk-create predictions (Label Studio batches the inserts server-side)."""
        created = 0
        for start in range(0, len(rows), chunk):
            path = f"/api/projects/{project_id}/import/predictions"
            resp = self.request("POST", path, json=rows[start : start + chunk])
            created += int(resp.json().get("created", 0)) if resp.content else 0
        return created

    def update_project(self, project_id: str, **fields: Any) -> dict:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields).json()

    def fetch_file(self, path: str, *, max_bytes: int = 32 * 1024 * 1024) -> bytes:
        """A media file Label Studio serves (`/data/upload/...`, `/data/local-files/?d=...`), with the token.

        Streamed, so an oversized file is refused (BadInput) before it fills memory; HTTP and network
        failures raise LabelStudioError with the status (404: the file is missing).
        """
        if not path.startswith("/"):
            path = "/" + path
        try:
            with self._http.stream("GET", path, headers=self._auth_header()) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise LabelStudioError(self._redact(
                        f"Label Studio answered {resp.status_code} to GET {path}: {resp.text[:200]}"
                    ))
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise BadInput(f"is too large: {int(declared):,} bytes (at most {max_bytes:,})")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise BadInput(f"is too large: more bytes (at most {max_bytes:,})")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise LabelStudioError(self._redact(f"cannot reach Label Studio at {self.url}: {exc}")) from None


def unlabeled_items(tasks: list[dict], schema: Schema, skip_version: str | None = None) -> list[Item]:
    """The pool: tasks with no usable annotation, as Items; unreadable tasks are skipped with a log line.

    Tasks that already hold a prediction of `skip_version` (stored through /predict meanwhile) are
    left out, so Label Studio never holds two predictions of one version for a task.
    """
    pool = []
    for task in tasks:
        if any(not a.get("was_cancelled") for a in task.get("annotations") or [] if isinstance(a, dict)):
            continue
        if skip_version and any(isinstance(p, dict) and p.get("model_version") == skip_version
                                for p in task.get("predictions") or []):
            continue
        try:
            pool.append(task_item(task, schema))
        except BadInput as exc:
            log.warning("pool: skipping %s", exc)
    return pool


def prediction_import_json(task_id: int, pred: Prediction, schema: Schema) -> dict:
    """One row for Label Studio's bulk prediction import."""
    return {"task": task_id, **prediction_json(pred, schema)}


def labels_from_tasks(tasks: list[dict], schema: Schema) -> list[Label]:
    """Labels from exported tasks; annotations that give no usable label are skipped with a log line."""
    labels = []
    for task in tasks:
        for annotation in task.get("annotations") or []:
            try:
                label = annotation_label(annotation, task, schema)
            except BadInput as exc:
                log.warning("skipping annotation %s from Label Studio: %s", annotation.get("id"), exc)
                continue
            if label is not None:
                labels.append(label)
    return labels
