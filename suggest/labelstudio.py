"""Everything Label Studio: label configs, task and annotation JSON, predictions, the REST client.

Label Studio JSON never travels past this module: the engine receives `Schema`, `Item` and
`Label` objects and hands back `Prediction`s. The shapes here are the ones Label Studio 1.23
really sends (observed on a live server), not the ones its docs suggest.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from suggest.config import redact_text
from suggest.ls_hosts import NoHost, Refused, guarded_transport
from suggest.schema import Answer, BadInput, Item, Label, Prediction, Schema, SchemaError, Span

log = logging.getLogger(__name__)

TEXT_OBJECTS = {"text", "hypertext", "paragraphs"}
IMAGE_OBJECTS = {"image"}
SUPPORTED = (
    "<Choices> (single or multiple choice) on a <Text> or <Image> object, and <Labels> (entity spans) on a "
    '<Text> object, e.g. <View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="A"/><Choice value="B"/></Choices></View>'
)


# label config ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def parse_controls(label_config: str) -> tuple[Schema, ...]:
    """Every control of the config this engine can serve, in config order.

    The others (a TextArea, Choices on audio, ...) are ignored with one log line each; a config
    with no servable control raises SchemaError naming what suggest supports.
    """
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
    skipped: list[str] = []
    for control in interface.controls:
        schema, why = _servable(control, objects)
        if schema is None:
            skipped.append(f"<{control.tag} name={control.name!r}>: {why}")
        else:
            found.append(schema)
    if not found:
        has = "; ".join(skipped) or "no control tags"
        raise SchemaError(f"this label config has nothing suggest can serve ({has}); suggest serves {SUPPORTED}")
    for why in skipped:
        log.info("label config: ignoring %s", why)
    return tuple(found)


def parse_config(label_config: str) -> Schema:
    """The first control this engine can serve (see `parse_controls`)."""
    return parse_controls(label_config)[0]


def _servable(control: Any, objects: dict[str, Any]) -> tuple[Schema | None, str]:
    """The Schema of one control, or None and why suggest cannot serve it."""
    tag = control.tag.lower()
    targets = [objects.get(name) for name in (control.to_name or [])]
    target = targets[0] if targets else None
    if target is None:
        return None, "it labels no object"
    obj = target.tag.lower()
    if tag == "choices" and obj in TEXT_OBJECTS | IMAGE_OBJECTS:
        kind = "image" if obj in IMAGE_OBJECTS else "text"
    elif tag == "labels" and obj in TEXT_OBJECTS - {"paragraphs"}:
        kind = "text"
    else:
        return None, f"suggest does not serve <{control.tag}> on <{target.tag}>"
    labels = list(dict.fromkeys(control.labels))
    multiple = tag == "choices" and str(control.attr.get("choice", "single")).lower() == "multiple"
    if len(labels) < (1 if tag == "labels" or multiple else 2):
        return None, f"it has {len(labels)} label(s)"
    value = str(target.attr.get("value", ""))
    if not value.startswith("$") or len(value) < 2:
        return None, f"its object <{target.tag}> reads no task field (value={value!r})"
    attrs = {label: tag_.attr for label, tag_ in (getattr(control, "labels_attrs", None) or {}).items()
             if isinstance(getattr(tag_, "attr", None), dict)}
    hints = {label: str(a["hint"]) for label, a in attrs.items() if a.get("hint")}
    entities = _entity_types(control.name, attrs) if tag == "labels" else {}
    model = str(control.attr["model"]).strip() if str(control.attr.get("model") or "").strip() else None
    # a pre-trained model's names for a label: model_label=, or label-studio-ml-backend's predicted_values=
    model_labels = {label: tuple(p.strip() for p in str(a.get("model_label", a.get("predicted_values"))).split(",")
                                 if p.strip())
                    for label, a in attrs.items() if "model_label" in a or "predicted_values" in a}
    return Schema(control.name, target.name, value[1:], tuple(labels), kind, multiple, hints,
                  "labels" if tag == "labels" else "choices", entities, model, model_labels), ""


def _entity_types(name: str, attrs: dict[str, dict]) -> dict[str, tuple[str, ...]]:
    """`<Label value="Firm" entity="ORG,NORP"/>`: the spaCy types that bootstrap a label ("none": no type)."""
    found = {label: str(a["entity"]) for label, a in attrs.items() if "entity" in a}
    if not found:
        return {}
    from backends.spans import SPACY_TYPES  # no spaCy import: the names only

    out: dict[str, tuple[str, ...]] = {}
    for label, text in found.items():
        types = tuple(t.strip().upper() for t in text.split(",") if t.strip() and t.strip().lower() != "none")
        unknown = [t for t in types if t not in SPACY_TYPES]
        if unknown:
            raise SchemaError(f"<Label value={label!r} entity=...> in {name!r} names {unknown}, which are not spaCy "
                              f"entity types; use some of {list(SPACY_TYPES)} or 'none'")
        out[label] = types
    return out


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
    if not head.isascii() or not head.isdigit() or len(head) > 18:  # an id fits a 64-bit integer
        raise BadInput(f"project {text[:40]!r} is not a Label Studio project reference like '5' or '5.1795257467'")
    return str(int(head))


# tasks and annotations ------------------------------------------------------------------------


def task_item(task: Any, schema: Schema) -> Item:
    """What a task asks one control to label: its text, or its image reference; BadInput names what is missing."""
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
        what = "an image URL or path" if schema.object_type == "image" else "text"
        raise BadInput(f"{where}: data.{schema.value_key} must be {what}, got {type(text).__name__}")
    if not text.strip():
        raise BadInput(f"{where}: data.{schema.value_key} is empty")
    return Item(text=text, task_id=task_id if isinstance(task_id, int) else None)


def task_items(task: Any, schemas: tuple[Schema, ...]) -> dict[str, Item | BadInput]:
    """One task read for every control: its Item, or the BadInput saying why that control cannot read it."""
    out: dict[str, Item | BadInput] = {}
    for schema in schemas:
        try:
            out[schema.from_name] = task_item(task, schema)
        except BadInput as exc:
            out[schema.from_name] = exc
    return out


def annotation_labels(annotation: Any, task: Any, schemas: tuple[Schema, ...]) -> list[Label]:
    """The answers one annotation gives its task, one Label per control it answers.

    Empty for a cancelled annotation. A spans control always gets an answer from a submitted
    annotation: no regions means "this text has no entities", which is worth learning. Raises
    BadInput for a label that is not in the config or a task without usable data.
    """
    if not isinstance(annotation, dict):
        raise BadInput(f"annotation must be an object, got {type(annotation).__name__}")
    ann_id = annotation.get("id")
    if not isinstance(ann_id, int) or isinstance(ann_id, bool):
        raise BadInput("annotation has no integer 'id'")
    if annotation.get("was_cancelled") or is_autolabel(annotation):  # machine work never trains (issue 14)
        return []
    result = annotation.get("result")
    labels = []
    for schema in schemas:
        answer = _answer(result, schema)
        if answer is None:
            continue
        item = task_item(task, schema)
        if item.task_id is None:
            raise BadInput(f"annotation {ann_id}: its task has no integer 'id'")
        if isinstance(answer, tuple) and answer and isinstance(answer[0], Span):
            answer = tuple(_check_span(sp, item.text, ann_id) for sp in answer)
        labels.append(Label(
            task_id=item.task_id,
            annotation_id=ann_id,
            label=answer,
            text=item.text,
            ground_truth=bool(annotation.get("ground_truth")),
            updated_at=str(annotation.get("updated_at") or annotation.get("created_at") or ""),
            control=schema.from_name,
            annotator=_user_id(annotation.get("completed_by")),
            created_at=str(annotation.get("created_at") or ""),
            lead_time=_seconds(annotation.get("lead_time")),
        ))
    return labels


def _user_id(value: Any) -> int | None:
    """`completed_by` as a user id: an integer in webhooks and exports, an object with `id` in some exports."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    """`lead_time` (seconds), or None when Label Studio sent none or something else."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def annotation_label(annotation: Any, task: Any, schema: Schema) -> Label | None:
    """The label one annotation gives one control, or None when it gives none (cancelled, skipped, empty)."""
    found = annotation_labels(annotation, task, (schema,))
    return found[0] if found else None


def _regions(result: Any, schema: Schema) -> list[dict]:
    if result is None:
        return []
    if not isinstance(result, list):
        raise BadInput(f"annotation result must be a list, got {type(result).__name__}")
    return [r for r in result if isinstance(r, dict) and r.get("from_name") == schema.from_name]


def _answer(result: Any, schema: Schema) -> Answer | None:
    """One control's answer in a result list: None when the control was not answered."""
    return _READERS[schema.task_kind](_regions(result, schema), schema)


def _read_spans(regions: list[dict], schema: Schema) -> Answer:
    """`labels` regions -> the text's spans (no region is an answer too: no entities)."""
    spans = []
    for region in regions:
        value = region.get("value")
        if not isinstance(value, dict):
            continue
        names = value.get("labels")
        start, end = value.get("start"), value.get("end")
        if not isinstance(names, list) or not names or not isinstance(start, int) or not isinstance(end, int):
            raise BadInput(f"a {schema.from_name!r} region needs integer start/end and labels: {value!r}")
        for name in names:
            if not isinstance(name, str):
                raise BadInput(f"span labels must be text, got {name!r}")
            spans.append(Span(start, end, schema.check_label(name), str(value.get("text") or "")))
    return tuple(sorted(set(spans), key=lambda sp: (sp.start, sp.end, sp.label)))


def _chosen(regions: list[dict], schema: Schema) -> list[str] | None:
    """The choices of the first `choices` region that has any, checked against the config."""
    for region in regions:
        value = region.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(choices, list) or not choices:
            continue
        for choice in choices:
            if not isinstance(choice, str):
                raise BadInput(f"annotation choices must be text, got {choice!r}")
            schema.check_label(choice)
        return choices
    return None


def _read_choice(regions: list[dict], schema: Schema) -> Answer | None:
    chosen = _chosen(regions, schema)
    return chosen[0] if chosen else None


def _read_choices(regions: list[dict], schema: Schema) -> Answer | None:
    chosen = _chosen(regions, schema)
    return tuple(sorted(set(chosen))) if chosen else None


def _check_span(span: Span, text: str, ann_id: int) -> Span:
    """A span must lie inside its text; its text is re-read from the offsets, the source of truth."""
    if not 0 <= span.start < span.end <= len(text):
        raise BadInput(f"annotation {ann_id}: span {span.start}-{span.end} is outside the text ({len(text)} chars)")
    return Span(span.start, span.end, span.label, text[span.start : span.end])


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


# webhook events -------------------------------------------------------------------------------

HANDLED_ACTIONS = frozenset({
    "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED", "TASKS_DELETED",
    "START_TRAINING", "PROJECT_UPDATED",
})
MAX_ID = 2**63 - 1  # SQLite's INTEGER


@dataclass(frozen=True)
class WebhookEvent:
    """One Label Studio webhook, parsed: the server hands this to the engine, never the JSON.

    The annotation's answers need the project's controls, so they are read by `labels(schemas)`
    once the engine knows the project.
    """

    action: str
    project_id: str | None = None  # None for an action suggest ignores
    label_config: str | None = None
    annotation_id: int | None = None
    task_id: int | None = None
    annotation_ids: tuple[int, ...] = ()
    task_ids: tuple[int, ...] = ()
    annotation: dict | None = None
    task: dict | None = None

    @property
    def handled(self) -> bool:
        return self.project_id is not None

    def labels(self, schemas: tuple[Schema, ...]) -> list[Label]:
        """The annotation's answers for these controls (empty for a cancelled one)."""
        return annotation_labels(self.annotation, self.task, schemas)


def parse_event(payload: Any) -> WebhookEvent:
    """A webhook body -> WebhookEvent; BadInput names what is missing or out of range."""
    if not isinstance(payload, dict):
        raise BadInput(f"the event must be a JSON object, got {type(payload).__name__}")
    action = payload.get("action")
    if not isinstance(action, str):
        raise BadInput("the event has no 'action'")
    if action not in HANDLED_ACTIONS:
        return WebhookEvent(action)
    project = payload.get("project")
    config = project.get("label_config") if isinstance(project, dict) else None
    if config is not None and not isinstance(config, str):
        raise BadInput(f"project.label_config must be text, got {type(config).__name__}")
    pid = project_key(project)
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        annotation, task = payload.get("annotation"), payload.get("task")
        if not isinstance(annotation, dict):
            raise BadInput(f"{action} needs an 'annotation' object")
        ann_id = annotation.get("id")
        if not isinstance(ann_id, int) or isinstance(ann_id, bool):
            raise BadInput("annotation has no integer 'id'")
        task_id = task.get("id") if isinstance(task, dict) else annotation.get("task")
        task_id = task_id if isinstance(task_id, int) and not isinstance(task_id, bool) else None
        _check_ids([ann_id] + ([task_id] if task_id is not None else []), "annotation/task")
        return WebhookEvent(action, pid, config, ann_id, task_id, annotation=annotation,
                            task=task if isinstance(task, dict) else None)
    if action == "ANNOTATIONS_DELETED":
        ids = _check_ids(annotation_ids(payload), "annotation")
        return WebhookEvent(action, pid, config, annotation_ids=tuple(ids))
    if action == "TASKS_DELETED":
        return WebhookEvent(action, pid, config, task_ids=tuple(_check_ids(task_ids(payload), "task")))
    return WebhookEvent(action, pid, config)


def _check_ids(ids: list[int], what: str) -> list[int]:
    bad = [i for i in ids if not 0 <= i <= MAX_ID]
    if bad:
        raise BadInput(f"{what} id {bad[0]} is out of range (Label Studio ids are 0 to {MAX_ID})")
    return ids


# predictions ----------------------------------------------------------------------------------


def result_json(pred: Prediction, schema: Schema) -> list[dict]:
    """One control's regions in Label Studio's result format."""
    return _WRITERS[schema.task_kind](pred, schema)


def _write_spans(pred: Prediction, schema: Schema) -> list[dict]:
    spans = pred.label if isinstance(pred.label, tuple) else ()
    return [
        {
            "id": f"{schema.from_name}-{i}",
            "from_name": schema.from_name,
            "to_name": schema.to_name,
            "type": "labels",
            "value": {"start": sp.start, "end": sp.end, "text": sp.text, "labels": [sp.label]},
            "score": _finite(sp.score if sp.score is not None else pred.probability),
        }
        for i, sp in enumerate(spans)
        if isinstance(sp, Span)
    ]


def _write_choices(pred: Prediction, schema: Schema) -> list[dict]:
    choices = list(pred.label) if isinstance(pred.label, tuple) else [pred.label]
    if not choices:
        return []
    return [
        {
            "from_name": schema.from_name,
            "to_name": schema.to_name,
            "type": "choices",
            "value": {"choices": choices},
            "score": _finite(pred.probability),
        }
    ]


# The Label Studio half of each control kind (suggest.kinds): how its answer is read from an annotation's
# result and how a prediction of it is written. A new kind adds one line to each.
_READERS: dict[str, Callable[[list[dict], Schema], Answer | None]] = {
    "classification": _read_choice, "multilabel": _read_choices, "spans": _read_spans,
}
_WRITERS: dict[str, Callable[[Prediction, Schema], list[dict]]] = {
    "classification": _write_choices, "multilabel": _write_choices, "spans": _write_spans,
}


def prediction_json(preds: Prediction | list[Prediction], schema: Schema | tuple[Schema, ...]) -> dict:
    """One task's entry in a /predict reply: every control's regions; the task's score is the least certain."""
    preds = [preds] if isinstance(preds, Prediction) else preds
    schemas = (schema,) if isinstance(schema, Schema) else schema
    by_name = {sc.from_name: sc for sc in schemas}
    result: list[dict] = []
    for pred in preds:
        sc = by_name.get(pred.control) or schemas[0]
        result += result_json(pred, sc)
    return {
        "result": result,
        "score": _finite(min(p.score for p in preds)) if preds else 0.0,
        "model_version": preds[0].model_version if preds else "",
    }


AUTOLABEL_KEY = "suggest_autolabel"  # in each result item of an annotation `suggest autolabel` wrote


def autolabel_annotation_json(pred: Prediction, schema: Schema, *, run_id: str, threshold: float) -> dict:
    """An annotation `suggest autolabel --apply` creates, marked as machine work three ways: every result item
    carries `suggest_autolabel` (run id, model version, threshold, probability) and `origin: "prediction"`,
    its region note (`meta.text`, shown in Label Studio's editor) says so, and `import_id` holds the run id
    (digits) so Label Studio's own filters can find a run. Never ground truth."""
    mark = {"run_id": run_id, "model_version": pred.model_version, "threshold": round(float(threshold), 6),
            "probability": round(float(pred.probability), 6)}
    note = (f"suggest autolabel run {run_id}: {pred.model_version}, p={pred.probability:.3f} >= threshold "
            f"{threshold:.3f}")
    result = [{**item, "origin": "prediction", "meta": {"text": [note]}, AUTOLABEL_KEY: mark}
              for item in result_json(pred, schema)]
    body: dict = {"result": result, "ground_truth": False, "was_cancelled": False}
    if run_id.isdigit():
        body["import_id"] = int(run_id)
    return body


def is_autolabel(annotation: Any) -> bool:
    """Whether an annotation (as Label Studio exports it) was written by `suggest autolabel`."""
    result = annotation.get("result") if isinstance(annotation, dict) else None
    return isinstance(result, list) and any(isinstance(r, dict) and AUTOLABEL_KEY in r for r in result)


def empty_prediction(model_version: str) -> dict:
    """The entry for a task we could not read: keeps `results` aligned with `tasks`."""
    return {"result": [], "score": 0.0, "model_version": model_version}


def _finite(x: float) -> float:
    x = float(x)
    return round(min(max(x, 0.0), 1.0), 6) if math.isfinite(x) else 0.0


# REST client ----------------------------------------------------------------------------------


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused a call; the message says which and why."""


def _prediction_id(body: object) -> int | None:
    """The id in Label Studio's answer to a prediction write (None when it names none)."""
    made = body.get("id") if isinstance(body, dict) else None
    return made if isinstance(made, int) and not isinstance(made, bool) else None


def _error_detail(resp: httpx.Response) -> str:
    """What an error answer says, for logs and /metrics: only the `detail` of Label Studio's JSON errors.
    Why: with auth off a stranger's /setup can point suggest at another host on the network, and what that
    host answers must not come back to them through /metrics."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        errors = body.get("validation_errors")
        return f": {(detail + (f' {json.dumps(errors)}' if errors else ''))[:300]}"
    return f": (a {resp.headers.get('content-type', 'untyped').split(';')[0] or 'untyped'} answer, not shown)"


class LabelStudioClient:
    """The few REST calls suggest makes, with either kind of Label Studio token.

    A legacy token is sent as `Token <key>`. A personal access token (a JWT refresh token) is
    exchanged at /api/token/refresh for a 5-minute access token, sent as `Bearer`, and renewed
    before it expires: the 401s users hit with the reference backend come from mixing these up.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, guarded: bool = False):
        """`guarded`: the URL came from a /setup, which anyone may send with auth off; connect only to hosts
        `ls_hosts` allows (never the metadata service), resolved once per connection, with no env proxy."""
        self.url = url.rstrip("/")
        self._token = token.strip()
        self._access: tuple[str, float] | None = None
        if guarded:
            self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=guarded_transport(),
                                      trust_env=False)
        else:
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
        began = time.perf_counter()
        try:
            resp = self._http.request(method, path, headers=self._auth_header(), **kwargs)
        except (httpx.HTTPError, Refused, NoHost) as exc:
            raise LabelStudioError(self._redact(f"cannot reach Label Studio at {self.url}: {exc}")) from None
        # at DEBUG, every call and what it cost: where a slow push or sync spends its time (issue 17)
        log.debug("Label Studio %s %s: %d in %.0f ms", method, path, resp.status_code,
                  1000 * (time.perf_counter() - began))
        if resp.status_code >= 400:
            raise LabelStudioError(self._redact(
                f"Label Studio answered {resp.status_code} to {method} {path}{_error_detail(resp)}"
            ))
        return resp

    def _redact(self, text: str) -> str:
        """Errors end up in logs and /metrics: they never carry a token (a proxy may echo it back)."""
        for secret in (self._token, self._access[0] if self._access else None):
            if secret:
                text = text.replace(secret, "[redacted]")
        return redact_text(text)  # user:pass@ in the configured URL

    def label_config(self, project_id: str) -> str | None:
        return self.config_and_total(project_id)[0]

    def config_and_total(self, project_id: str) -> tuple[str | None, int]:
        """The project's label config and its count of annotations, skipped ones excluded (one call)."""
        body = self.request("GET", f"/api/projects/{project_id}").json()
        config, total = body.get("label_config"), body.get("total_annotations_number")
        return (config if isinstance(config, str) else None), (total if isinstance(total, int) else -1)

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

    def create_prediction(self, project_id: str, row: dict) -> int | None:
        """Create one prediction (an import row) in its own request; returns its id, or None when Label Studio
        no longer holds the task. Why: Label Studio's bulk import recounts every task of the project per call,
        this one only its task (see PredictionPace)."""
        try:
            body = self.request("POST", "/api/predictions/", json={**row, "project": int(project_id)}).json()
        except LabelStudioError as exc:
            if " 400 " in str(exc) and not self._unless_gone("GET", f"/api/tasks/{int(row['task'])}"):
                return None  # the task was deleted (its webhook not seen yet): nothing to predict on
            raise
        return _prediction_id(body)

    def update_prediction(self, project_id: str, prediction_id: int, row: dict) -> bool:
        """Overwrite one prediction with an import row (its task, result, score and version), in place; False
        when Label Studio no longer has it (404). Why: a new version's row for a task that holds the last one's,
        or that takes over another task's superseded row (Label Studio's PATCH moves it), costs one write, where
        a new row costs that write and a delete. A moved row leaves its old task's `total_predictions` counter
        one too high until Label Studio recounts it (a count only, the Data Manager's Predictions column)."""
        return self._unless_gone("PATCH", f"/api/predictions/{int(prediction_id)}",
                                 json={**row, "project": int(project_id)})

    def model_versions(self, project_id: str) -> dict[str, int]:
        """Model versions that have predictions in the project, with their prediction counts."""
        held = self.request("GET", f"/api/projects/{project_id}/model-versions/").json()
        return {str(v): int(n) for v, n in held.items()} if isinstance(held, dict) else {}

    def delete_model_version(self, project_id: str, version: str) -> int:
        """Delete every prediction of one model version in the project (Label Studio's own bulk delete)."""
        resp = self.request("DELETE", f"/api/projects/{project_id}/model-versions/", json={"model_version": version})
        body = resp.json() if resp.content else {}
        return int(body.get("deleted_predictions", 0)) if isinstance(body, dict) else 0

    # incremental task list and pruning (issue 17): never a full export per version

    def list_tasks(self, project_id: str, *, after: int = 0, page_size: int = 1000,
                   include: str = "id,data,total_annotations,cancelled_annotations") -> list[dict]:
        """Tasks with an id above `after`, in id order, page by page (the data manager's filter)."""
        query = {"ordering": ["tasks:id"]}
        if after:
            query["filters"] = {"conjunction": "and", "items": [
                {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(after)}]}
        out: list[dict] = []
        page = 1
        while True:
            body = self.request("GET", "/api/tasks", params={
                "project": project_id, "page": page, "page_size": page_size, "include": include,
                "query": json.dumps(query)}).json()
            batch = body.get("tasks", []) if isinstance(body, dict) else []
            out += [t for t in batch if isinstance(t, dict) and isinstance(t.get("id"), int)]
            if len(batch) < page_size or len(out) >= int(body.get("total", 0)):
                return out
            page += 1

    def task_ids(self, project_id: str, *, page_size: int = 5000) -> list[int]:
        """Every task id of the project (ids only: the cheap half of a reconcile)."""
        return [t["id"] for t in self.list_tasks(project_id, page_size=page_size, include="id")]

    def task_count(self, project_id: str) -> int:
        """How many tasks the project holds (Label Studio's own counter). Asked for that count alone: the full
        project read aggregates annotations and predictions (0.46 s at 100,000 tasks against 0.085 s; 4.7 s under
        load, on a version's listing when the reconcile fell on it)."""
        body = self.request("GET", f"/api/projects/{project_id}", params={"include": "id,task_number"}).json()
        return int(body.get("task_number") or 0)

    def predictions(self, project_id: str) -> list[dict]:
        """The project's predictions (id, task, model_version, score, result; Label Studio does not page this
        list). The result lets a row be imported again as it was (the prune's clear-and-give-back)."""
        held = self.request("GET", "/api/predictions", params={"project": project_id}).json()
        held = held if isinstance(held, list) else held.get("results", []) if isinstance(held, dict) else []
        return [{"id": p.get("id"), "task": p.get("task"), "model_version": p.get("model_version"),
                 "score": p.get("score"), "result": p.get("result")} for p in held if isinstance(p, dict)]

    def delete_task_predictions(self, project_id: str, task_ids: list[int]) -> int:
        """Delete every prediction of these tasks in one short transaction (the Data Manager's action)."""
        resp = self.request("POST", "/api/dm/actions", params={"id": "delete_tasks_predictions", "project": project_id},
                            json={"selectedItems": {"all": False, "included": [int(t) for t in task_ids]}})
        body = resp.json() if resp.content else {}
        return int(body.get("processed_items", 0)) if isinstance(body, dict) else 0

    def delete_prediction(self, prediction_id: int) -> bool:
        """Delete one prediction (its own short transaction in Label Studio); False when already gone."""
        return self._unless_gone("DELETE", f"/api/predictions/{int(prediction_id)}")

    def create_annotation(self, task_id: int, body: dict) -> dict:
        """Create one annotation on a task (`suggest autolabel --apply`); Label Studio's reply, with its id."""
        return self.request("POST", f"/api/tasks/{int(task_id)}/annotations", json=body).json()

    def delete_annotation(self, annotation_id: int) -> bool:
        """Delete one annotation; False when Label Studio no longer has it (404)."""
        return self._unless_gone("DELETE", f"/api/annotations/{int(annotation_id)}")

    def _unless_gone(self, method: str, path: str, **kwargs: Any) -> bool:
        """Write to one object; False when Label Studio no longer has it (404), any other error raised."""
        try:
            self.request(method, path, **kwargs)
        except LabelStudioError as exc:
            if " 404 " in str(exc):
                return False
            raise
        return True

    def annotation(self, annotation_id: int) -> dict | None:
        """One annotation, or None when Label Studio has none with this id."""
        try:
            return self.request("GET", f"/api/annotations/{int(annotation_id)}").json()
        except LabelStudioError as exc:
            if " 404 " in str(exc):
                return None
            raise

    def webhooks(self, project_id: str) -> list[dict]:
        """The project's webhooks (Label Studio makes one, `<backend url>/webhook`, when a backend connects)."""
        held = self.request("GET", "/api/webhooks/", params={"project": project_id}).json()
        return [w for w in held if isinstance(w, dict)] if isinstance(held, list) else []

    def set_webhook_headers(self, hook: dict, headers: dict[str, str]) -> None:
        """Replace one webhook's extra headers; its URL, actions and payload setting stay as they are."""
        actions = hook.get("actions") if isinstance(hook.get("actions"), list) else []
        self.request("PATCH", f"/api/webhooks/{int(hook['id'])}/", json={"headers": headers, "actions": actions})

    def update_project(self, project_id: str, **fields: Any) -> dict:
        """Change project fields; the answer holds the id and those fields, not Label Studio's counts (NO_COUNTS)."""
        return self.request("PATCH", f"/api/projects/{project_id}", params={"include": ",".join(["id", *fields])},
                            json=fields).json()

    def views(self, project_id: str) -> list[dict]:
        """The project's Data Manager tabs (saved views)."""
        held = self.request("GET", "/api/dm/views", params={"project": project_id}).json()
        return [v for v in held if isinstance(v, dict)] if isinstance(held, list) else []

    def save_view(self, project_id: str, data: dict, view_id: int | None = None) -> dict:
        """Create a Data Manager tab, or replace the data of one (`view_id`); other tabs are not touched."""
        body = {"project": int(project_id), "data": data}
        if view_id is None:
            return self.request("POST", "/api/dm/views", json=body).json()
        return self.request("PATCH", f"/api/dm/views/{view_id}", json=body).json()

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


KEY_HEADER = "X-Suggest-Project-Key"  # the header of suggest's own webhook that proves Label Studio sent it


def backend_webhook(hooks: list[dict], project_id: str, port: int | None = None) -> dict | None:
    """The webhook that brings this project's events to a backend: Label Studio's `<backend url>/webhook`,
    active, with payloads. When the project has several such (several backends), the one on `port`, if
    exactly one is; else None: the key must never go to another backend."""
    def ours(hook: dict) -> bool:
        url = hook.get("url")
        if not isinstance(url, str) or not hook.get("is_active", True) or not hook.get("send_payload", True):
            return False
        if str(hook.get("project")) != str(project_id):
            return False
        try:
            return urlsplit(url).path.rstrip("/").endswith("/webhook")
        except ValueError:
            return False

    found = [h for h in hooks if isinstance(h, dict) and isinstance(h.get("id"), int) and ours(h)]
    if len(found) > 1 and port is not None:
        found = [h for h in found if _port(h["url"]) == port]
    return found[0] if len(found) == 1 else None


def url_port(parts: SplitResult) -> int | None:
    """The port a URL reaches: the one written, else its scheme's default (ValueError for a bad one)."""
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())


def _port(url: str) -> int | None:
    try:
        return url_port(urlsplit(url))
    except ValueError:
        return None


def task_labelled(task: Any) -> bool | None:
    """Whether the task an annotation webhook carries holds an annotation now (Label Studio counts it before
    sending); None when the webhook carries no task."""
    if not isinstance(task, dict):
        return None
    count = task.get("total_annotations")
    return count > 0 if isinstance(count, int) and not isinstance(count, bool) else None


def has_annotations(task: Any) -> bool:
    """Whether a task holds an annotation that was not cancelled (by a person or by `suggest autolabel`)."""
    annotations = task.get("annotations") if isinstance(task, dict) else None
    return any(isinstance(a, dict) and not a.get("was_cancelled") for a in annotations or [])


def unlabeled_rows(
    tasks: list[dict], schemas: Schema | tuple[Schema, ...], skip_version: str | None = None
) -> list[dict[str, Item]]:
    """The pool: each task with no usable annotation, read for every control it can be read for.

    Tasks no control can read are skipped with a log line. Tasks that already hold a prediction
    of `skip_version` (stored through /predict meanwhile) are left out, so Label Studio never
    holds two predictions of one version for a task.
    """
    schemas = (schemas,) if isinstance(schemas, Schema) else schemas
    pool = []
    for task in tasks:
        if any(not a.get("was_cancelled") for a in task.get("annotations") or [] if isinstance(a, dict)):
            continue
        if skip_version and any(isinstance(p, dict) and p.get("model_version") == skip_version
                                for p in task.get("predictions") or []):
            continue
        read = task_items(task, schemas)
        row = {name: it for name, it in read.items() if isinstance(it, Item)}
        if row:
            pool.append(row)
        else:
            log.warning("pool: skipping %s", next(iter(read.values())))
    return pool


def listed_task(task: dict) -> tuple[int, dict, bool]:
    """(id, data, labelled) of a task from Label Studio's task list (`LabelStudioClient.list_tasks`)."""
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    done = int(task.get("total_annotations") or 0)
    return int(task["id"]), data, done > 0


def unlabeled_items(tasks: list[dict], schema: Schema, skip_version: str | None = None) -> list[Item]:
    """The pool for one control (see `unlabeled_rows`)."""
    return [row[schema.from_name] for row in unlabeled_rows(tasks, (schema,), skip_version)]


def prediction_import_json(task_id: int, preds: Prediction | list[Prediction],
                           schema: Schema | tuple[Schema, ...]) -> dict:
    """One row for Label Studio's bulk prediction import."""
    return {"task": task_id, **prediction_json(preds, schema)}


REVIEW_TAB = "suggest: review"


def review_view_data(task_ids: list[int]) -> dict:
    """The "suggest: review" tab: only the suspected tasks, lowest prediction score (most suspicious) first.

    Label Studio orders a tab only by a column, so the order rides on the suspects' predictions
    (`review_predictions`), whose score is low for a strong suspicion. No suspect: a filter no task meets.
    """
    ids = [int(t) for t in task_ids] or [-1]
    return {"title": REVIEW_TAB, "ordering": ["tasks:predictions_score"],
            "filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:id", "operator": "in_list", "type": "Number", "value": ids}]}}


# A project read without its task / annotation / prediction counts (0.35-0.4 s at 100,000 tasks in Label Studio
# 1.23, growing with its predictions table; 0.04-0.06 s without). `include` also limits the answer to the fields
# it names: with "id" alone `model_version` came back missing
NO_COUNTS = {"include": "id,model_version"}
# A project of this many tasks or more gets its predictions one row per call from its first push. Why: stock Label
# Studio 1.23 recounts every task of the project on each bulk import (0.1-0.2 s a call at 1,000 tasks, 0.8-1.8 s at
# 10,000, 4.6-6 s at 100,000, every save waiting meanwhile), one row per call only its own task. Where Label Studio
# runs its batch-only import flag (fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short) a bulk
# import costs a quarter as much per row (0.029 s against 0.118 at 10,000 tasks, deletes included), but each call
# holds Label Studio longer: at the same pace another project's saves had p99 2.76x idle against 1.08x one row per
# call, and the superseded rows (deleted per task while annotators pause) outgrew their prune: 1,498 rows after 10
# versions against 130 overwritten in place (benchmarks/push_save_cost.py and scale_push.py, session 23). Below it
# the recount is cheap, and a slow bulk call is Label Studio's load (a 1,300-task project that switched on slow
# calls at set-up got slower saves, not faster).
ROWS_MIN_TASKS = 5000


@dataclass
class PredictionPace:
    """How one project's predictions go to its Label Studio: bulk imports in a small project, one row per call
    (`POST /api/predictions/`, or a PATCH of the task's superseded row) in a big one (ROWS_MIN_TASKS).
    Shared by every writer of the project (the queue head, the review tab, pruning's re-imports)."""

    rows: bool = False
    tasks: int = 0  # the project's task count, as its last push listed it

    def by_row(self) -> bool:
        """True when this project's predictions go one row per call (from the push that first listed it big)."""
        if self.tasks >= ROWS_MIN_TASKS:
            self.rows = True
        return self.rows


_PACES: dict[tuple[str, str], PredictionPace] = {}
_PACES_LOCK = threading.Lock()


def prediction_pace(client: LabelStudioClient, project_id: str) -> PredictionPace:
    """The pace of one project of one Label Studio (clients come and go; the pace stays with the server)."""
    with _PACES_LOCK:
        return _PACES.setdefault((str(client.url), str(project_id)), PredictionPace())


def send_predictions(client: LabelStudioClient, project_id: str, rows: list[dict], *, duty: float = 1.0,
                     stop: Callable[[], bool] | None = None, reuse: dict[int, int] | None = None) -> dict[int, int]:
    """Write prediction rows: one bulk import, or one call per row in a big project (see PredictionPace).
    Returns task -> prediction id for the rows written one per call (a bulk import answers no ids).

    `reuse` (task -> id of a superseded prediction of suggest's, on that task or taken over from another): in
    row mode that row is overwritten in place instead (`update_prediction`), so nothing is left to prune; a
    row gone meanwhile is created anew.

    `duty` below 1 rests after each call for as long as keeps Label Studio busy with these writes at most that
    share of the time (a call of t seconds rests t * (1 - duty) / duty): every write holds Label Studio's
    database and its Python process, so an annotator's save that arrives meanwhile waits. A rest ends early
    once `stop()` (see rest_after)."""
    ids: dict[int, int] = {}
    if prediction_pace(client, project_id).by_row():
        for row in rows:
            began = time.perf_counter()
            old = (reuse or {}).get(row["task"])
            if old is not None and client.update_prediction(project_id, old, row):
                ids[row["task"]] = old
            elif (made := client.create_prediction(project_id, row)) is not None:
                ids[row["task"]] = made
            rest_after(time.perf_counter() - began, duty, stop)
        return ids
    began = time.perf_counter()
    client.import_predictions(project_id, rows)
    rest_after(time.perf_counter() - began, duty, stop)
    return ids


REST_POLL = 0.05  # seconds between checks of a rest's `stop`


def rest_seconds(took: float, duty: float) -> float:
    """How long to rest after a Label Studio call of `took` seconds to keep it busy `duty` of the time."""
    return took * (1.0 - duty) / duty if 0.0 < duty < 1.0 and took > 0 else 0.0


def rest_after(took: float, duty: float, stop: Callable[[], bool] | None = None) -> None:
    """Sleep so that a Label Studio call that took `took` seconds keeps it busy `duty` of the time (1: no rest).

    `stop`: the rest ends as soon as it returns True. Why: at 10,000 tasks a bulk import of a paced head takes
    ~1 s and rests ~3 s, and the next version's push, waiting for the project, waited out the whole rest
    (publish to /next serving the first choice: up to 9 s, the target 5 s)."""
    seconds = rest_seconds(took, duty)
    if seconds <= 0:
        return
    until = time.monotonic() + seconds
    if stop is None:
        time.sleep(until - time.monotonic())
        return
    while not stop() and (left := until - time.monotonic()) > 0:
        time.sleep(min(REST_POLL, left))


def review_tab_rows(suspects: list[dict], version: str, schemas: tuple[Schema, ...], *,
                    limit: int = 100) -> tuple[list[int], list[dict]]:
    """The review tab's tasks (most suspicious first, at most `limit`) and one prediction row for each.

    Each suspect task gets a prediction of `version` holding the label the model suggests, scored by rank
    (0.99 for the first, rising) so the tab's ordering follows the suspicion: Label Studio orders a tab by
    the scores of the project's current `model_version`, so every version writes them again."""
    by_name = {s.from_name: s for s in schemas}
    seen: dict[int, dict] = {}
    for s in suspects:
        if s["task_id"] not in seen and s.get("control", schemas[0].from_name) in by_name:
            seen[s["task_id"]] = s
    top = list(seen.values())[:limit]
    rows = []
    for rank, s in enumerate(top):
        schema = by_name[s.get("control", schemas[0].from_name)]
        # strictly increasing, so the tab keeps the suspicion order; near 1 ("certain"), so where a suspect still
        # waits for more annotators (overlap > 1) uncertainty sampling does not serve it first
        score = round(0.99 + 0.01 * rank / max(len(top), 1), 6)
        suggested = tuple(s["suggested"]) if isinstance(s["suggested"], list) else s["suggested"]  # multi-label
        rows.append(prediction_import_json(s["task_id"], Prediction(suggested, float(s["score"]), score,
                                                                    version, schema.from_name), schemas))
    return [s["task_id"] for s in top], rows


def save_review_view(client: LabelStudioClient, project_id: str, top: list[int]) -> None:
    """Save the "suggest: review" tab listing `top` (the only tab created or changed): which tasks it shows.
    Their order rides on their rows of the current version (`review_tab_rows`), written apart."""
    held = next((v for v in client.views(project_id)
                 if isinstance(v.get("data"), dict) and v["data"].get("title") == REVIEW_TAB), None)
    client.save_view(project_id, review_view_data(top), None if held is None else held.get("id"))


def finish_review_tab(client: LabelStudioClient, project_id: str, top: list[int], version: str, *,
                      set_version: bool = True, still_current: Callable[[], bool] = lambda: True,
                      view: bool = True) -> None:
    """Once the tab's rows are in: point Label Studio at their version if needed, and save the tab listing
    `top` (`view` False: it was saved before the rows, see Engine.write_review_tab).

    `set_version` points Label Studio at `version` when it is not already (the live loop does the same after
    each push; with no unlabeled task left the loop pushes nothing and leaves it), and only while
    `still_current()`: a report on a version a newer one has replaced, or one the loop has not pushed yet,
    must not point Label Studio at it (no unlabelled task would hold a row of that version, and Label Studio
    would serve random tasks)."""
    if set_version and still_current() and client.request(
            "GET", f"/api/projects/{project_id}", params=NO_COUNTS).json().get("model_version") != version:
        client.update_project(project_id, model_version=version)
    if view:
        save_review_view(client, project_id, top)


def labels_from_tasks(tasks: list[dict], schemas: Schema | tuple[Schema, ...]) -> list[Label]:
    """Labels from exported tasks; annotations that give no usable label are skipped with a log line."""
    schemas = (schemas,) if isinstance(schemas, Schema) else schemas
    labels = []
    for task in tasks:
        for annotation in task.get("annotations") or []:
            try:
                labels += annotation_labels(annotation, task, schemas)
            except BadInput as exc:
                log.warning("skipping annotation %s from Label Studio: %s", annotation.get("id"), exc)
    return labels


# export (issue 18): stored annotations back into Label Studio's import format ------------------


def answer_result_json(answer: Answer, schema: Schema) -> list[dict]:
    """One control's answer as the regions of an annotation's `result` (no score: an annotator's answer).

    The inverse of the readers above: `annotation_labels` reads these regions back to the same answer."""
    if schema.task_kind == "spans":
        return [{"id": f"{schema.from_name}-{i}", "from_name": schema.from_name, "to_name": schema.to_name,
                 "type": "labels", "value": {"start": sp.start, "end": sp.end, "text": sp.text, "labels": [sp.label]}}
                for i, sp in enumerate(answer) if isinstance(sp, Span)]
    choices = [answer] if isinstance(answer, str) else list(answer)
    if not choices:
        return []
    return [{"from_name": schema.from_name, "to_name": schema.to_name, "type": "choices",
             "value": {"choices": choices}}]


def export_task_json(task_id: int, data: dict[str, str], annotations: list[list[Label]],
                     schemas: tuple[Schema, ...]) -> dict:
    """One task in Label Studio's import format: its data and one annotation per list of Labels (the
    controls one annotation answered). `completed_by` is the annotator's user id where it is known (Label
    Studio accepts ids of its organization's members); `ground_truth` is always explicit, since an
    import without it makes every annotation ground truth."""
    by_name = {s.from_name: s for s in schemas}
    out = []
    for group in annotations:
        first = group[0]
        result: list[dict] = []
        for lb in group:
            schema = by_name.get(lb.control or schemas[0].from_name)
            if schema is not None:
                result += answer_result_json(lb.label, schema)
        ann: dict[str, Any] = {"id": first.annotation_id, "result": result, "ground_truth": first.ground_truth,
                               "was_cancelled": False, "lead_time": first.lead_time}
        if first.annotator is not None:
            ann["completed_by"] = first.annotator
        if first.created_at:
            ann["created_at"] = first.created_at
        if first.updated_at:
            ann["updated_at"] = first.updated_at
        out.append(ann)
    return {"data": dict(data), "annotations": out, "meta": {"suggest_task_id": task_id}}
