"""The Label Studio ML backend protocol over HTTP (FastAPI), thin: parse, call the engine, answer.

Routes follow label-studio-ml-backend 2.x: /health, /setup, /predict, /webhook, /versions, plus
/metrics. /health and /setup answer from memory; /webhook only records and returns (training
runs in the background); nothing slow runs inside a request Label Studio times out.

Hardening: a request body over SUGGEST_MAX_BODY_MB (default 50) gets 413, counted as it streams in
(chunked bodies too), so an oversized body is never held in memory. Every 4xx is JSON
{"detail": "..."} naming the problem. With BASIC_AUTH_USER set, every route needs it except
/health (liveness) and /webhook (Label Studio's webhooks carry no credentials); that includes
/docs, /redoc and /openapi.json. /webhook is protected instead by SUGGEST_WEBHOOK_SECRET (when
set, header X-Suggest-Secret must match; add it to the webhook's `headers` in Label Studio), and
by confirmation: with Label Studio access an annotation event is only a hint that the engine
checks against Label Studio before it counts (engine.Confirmer).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from backends.encoders import import_runtime
from suggest import __version__
from suggest import labelstudio as ls
from suggest.config import Settings
from suggest.dashboard.pages import REFRESH_SECONDS
from suggest.engine import Engine, HostChangeRefused, UnknownProject
from suggest.request_times import SPLIT_KEY, RequestTimes
from suggest.schema import BadInput, Item, SchemaError
from suggest.store import store_times, store_times_reset

log = logging.getLogger(__name__)


class SetupRequest(BaseModel):
    """What Label Studio sends to /setup (extra keys are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")
    project: str | int = Field(description="'<id>.<created_at unix seconds>' or the project id")
    schema_: str = Field(alias="schema", description="the project's label config (XML)")
    hostname: str | None = None
    access_token: str | None = None
    extra_params: Any = None


class SetupResponse(BaseModel):
    model_version: str


class PredictRequest(BaseModel):
    """What Label Studio sends to /predict: tasks as it stores them, plus the project's config."""

    model_config = ConfigDict(extra="allow")
    tasks: list[Any] = Field(description="Label Studio task objects; each needs data.<field> the config reads")
    project: str | int | None = None
    label_config: str | None = None
    params: Any = None


class PredictResponse(BaseModel):
    results: list[dict[str, Any] | list[dict[str, Any]]] = Field(
        description="per task, in order: its prediction, or [] (no new one: the loop has just pushed this version's)")
    model_version: str


MAX_BODY_ENV = "SUGGEST_MAX_BODY_MB"
WEBHOOK_SECRET_ENV = "SUGGEST_WEBHOOK_SECRET"
SECRET_HEADER = "X-Suggest-Secret"


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    max_body_mb: float | None = None,
    webhook_secret: str | None = None,
) -> FastAPI:
    """The app; `max_body_mb` and `webhook_secret` override the settings' (tests use them)."""
    settings = settings or Settings.from_env()
    if max_body_mb is None:
        max_body_mb = settings.max_body_mb
    if webhook_secret is None:
        webhook_secret = settings.webhook_secret

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = engine or Engine(settings)
        # Before listening: the heavy imports hold the GIL for long stretches, and would stall /health and /setup.
        model_path = getattr(app.state.engine.encoder, "model_path", None)
        seconds = await _run_sync(_import_before_listening, model_path if isinstance(model_path, str) else None)
        log.info("torch, transformers and label-studio-sdk imported in %.1f s; the encoder loads in the background",
                 seconds)
        yield
        if engine is None:
            app.state.engine.close()

    app = FastAPI(
        title="suggest",
        version=__version__,
        description="Active-learning label suggestions for Label Studio (ML backend protocol).",
        lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,  # served below, behind basic auth
    )
    guard = _basic_auth(settings)
    app.add_middleware(BodyLimit, max_bytes=int(max_body_mb * 1024 * 1024), limit_mb=max_body_mb)
    app.add_middleware(RequestTimes, slow_ms=settings.slow_answer_ms)  # outermost: times the whole answer

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _printable(str(exc))})

    @app.exception_handler(SchemaError)
    async def bad_schema(_: Request, exc: SchemaError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _printable(str(exc))})

    @app.exception_handler(HostChangeRefused)
    async def host_change_refused(_: Request, exc: HostChangeRefused) -> JSONResponse:
        return JSONResponse(status_code=403, content={"detail": _printable(str(exc))})

    @app.exception_handler(UnknownProject)
    async def unknown_project(_: Request, exc: UnknownProject) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": _printable(str(exc))})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(_printable(f"{where}: {err.get('msg')}"))
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems), "errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if exc.status_code == 400 and cause is not None:  # FastAPI's "error parsing the body": say what
            what = "nested too deeply" if isinstance(cause, RecursionError) else f"not valid JSON ({cause})"
            exc = HTTPException(400, detail=_printable(f"the request body is {what}"), headers=exc.headers)
        return await http_exception_handler(request, exc)

    def engine_of(request: Request) -> Engine:
        return request.app.state.engine

    # the class Label Studio's model card shows: a hosted `--model pkg:Class` by its class name, else ours
    served_class = settings.model_class.rpartition(":")[2] if settings.model_class else "EmbeddingClassifier"

    @app.get("/health", summary="Liveness, from memory; never needs credentials")
    async def health(request: Request) -> dict:
        """Always "status": "UP" (Label Studio only needs a 200 with JSON); "model" says "loading" until the
        encoder can answer a /predict, then "ready". Async: answered on the event loop, never queued
        behind request threads."""
        loaded = engine_of(request).encoder.loaded
        return {"status": "UP", "model": "ready" if loaded else "loading", "model_class": served_class,
                "encoder_loaded": loaded}

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(guard)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(guard)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="suggest")

    @app.get("/redoc", include_in_schema=False, dependencies=[Depends(guard)])
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="suggest")

    @app.post("/setup", response_model=SetupResponse, dependencies=[Depends(guard)])
    def setup(body: SetupRequest, request: Request) -> SetupResponse:
        for name in ("schema_", "hostname", "access_token"):
            _check_text(getattr(body, name), name.rstrip("_"))
        project = engine_of(request).setup(
            ls.project_key(body.project), body.schema_, body.hostname, body.access_token,
            authenticated=settings.auth_enabled,  # the guard let it through: it carried the credentials
        )
        return SetupResponse(model_version=project.model_version)

    @app.post("/predict", response_model=PredictResponse, dependencies=[Depends(guard)])
    def predict(body: PredictRequest, request: Request) -> PredictResponse:
        eng = engine_of(request)
        _check_text(body.label_config, "label_config")
        if len(body.tasks) > settings.max_tasks_per_request:
            raise HTTPException(413, detail=f"{len(body.tasks)} tasks in one request; at most "
                                            f"{settings.max_tasks_per_request} (SUGGEST_MAX_TASKS_PER_REQUEST)")
        project = eng.project(_project_of(body), body.label_config)
        kinds = {s.from_name: s.object_type for s in project.schemas}
        rows, positions = [], []
        for i, task in enumerate(body.tasks):
            read = ls.task_items(task, project.schemas)
            for name, it in read.items():
                if isinstance(it, Item):
                    where = f"task {it.task_id if it.task_id is not None else i}: the data"
                    try:
                        _check_text(it.text, where)
                        if kinds[name] == "text":
                            _check_length(it.text, where, settings.max_text_chars)
                    except BadInput as exc:
                        read[name] = exc
            row = {name: it for name, it in read.items() if isinstance(it, Item)}
            if row:
                rows.append(row)
                positions.append(i)
                continue
            problem = next(iter(read.values()))
            if len(body.tasks) == 1:
                raise problem  # type: ignore[misc]
            log.warning("predict: skipping task %d of %d: %s", i, len(body.tasks), problem)
        # Label Studio stores what a batch /predict answers; a task the loop's push already covers for this
        # version gets [] (no prediction) so it never holds two of one version. Interactive calls (a context)
        # store nothing and always get an answer.
        claimed_version = project.model_version
        interactive = isinstance(body.params, dict) and body.params.get("context") is not None
        ids = [t for row in rows if (t := _task_id(row)) is not None]
        covered = set() if interactive else project.claim_predictions(claimed_version, ids, "predict")
        predictions = project.predict_rows(rows)
        version = project.model_version
        for preds in predictions:
            if preds:
                version = preds[0].model_version
                break
        if version != claimed_version:
            covered = set()
        results: list[dict | list | None] = [None] * len(body.tasks)
        for pos, row, preds in zip(positions, rows, predictions, strict=True):
            if _task_id(row) in covered:
                results[pos] = []
            else:
                results[pos] = ls.prediction_json(preds, project.schemas) if preds else None
        filled = [r if r is not None else ls.empty_prediction(version) for r in results]
        if not interactive:  # issue 14: the suggestion each unannotated task was given (agreement estimate)
            eng.record_served(project, rows, predictions, [ls.has_annotations(body.tasks[pos]) for pos in positions])
        return PredictResponse(results=filled, model_version=version)

    @app.post("/webhook", summary="Label Studio events; answers at once, trains in the background",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": WEBHOOK_SCHEMA}}}})
    async def webhook(request: Request) -> dict:
        event = ls.parse_event(await _json_object(request))
        signed = engine_of(request).signed(event.project_id, request.headers.get(ls.KEY_HEADER))
        if webhook_secret and not signed and not _webhook_allowed(request, event, webhook_secret, settings):
            raise HTTPException(
                status_code=401,
                detail=f"this webhook needs header {SECRET_HEADER} equal to {WEBHOOK_SECRET_ENV}: add it to the "
                       "webhook's headers in Label Studio",
            )
        return await _run_sync(_handle_event, engine_of(request), event, settings, signed, request=request)

    @app.get("/versions", dependencies=[Depends(guard)])
    def versions(request: Request, project: str | None = None) -> dict:
        """One project's versions, oldest first. Without `project` only when the backend serves one project:
        versions of different projects are different models and never listed together."""
        eng = engine_of(request)
        if project:
            pid = ls.project_key(project)
        elif len(eng.projects) == 1:
            pid = next(iter(eng.projects))
        elif not eng.projects:
            return {"versions": []}
        else:
            raise BadInput(f"this backend serves {len(eng.projects)} projects; name one: /versions?project=<id> "
                           f"(one of {', '.join(sorted(eng.projects, key=_numeric)[:20])})")
        proj = eng.project(pid)
        names = [v.version for v in eng.store.versions(pid)]
        if proj.published.record is None:
            names.append(proj.model_version)
        return {"project": pid, "versions": names}

    @app.get("/metrics", dependencies=[Depends(guard)])
    def metrics(request: Request, project: str | None = None) -> dict:
        return engine_of(request).metrics(ls.project_key(project) if project else None)

    @app.get("/metrics/requests", dependencies=[Depends(guard)])
    def request_times(request: Request) -> dict:
        """How long suggest took to answer, per route (Label Studio waits for /webhook inside each save)."""
        return _times(request.app).summary()

    @app.get("/ui", include_in_schema=False, dependencies=[Depends(guard)])
    @app.get("/ui/", include_in_schema=False, dependencies=[Depends(guard)])
    def dashboard(request: Request, refresh: int = Query(REFRESH_SECONDS, ge=0, le=3600)) -> HTMLResponse:
        """The dashboard's project list (suggest/dashboard): read from memory and the store, never from LS."""
        from suggest.dashboard import data, pages

        rows = data.overview(engine_of(request))
        return _page(pages.render_index(rows, root=_ui_root(request), generated_at=_now(), refresh=refresh))

    @app.get("/ui/projects/{project}", include_in_schema=False, dependencies=[Depends(guard)])
    def dashboard_project(request: Request, project: str,
                          refresh: int = Query(REFRESH_SECONDS, ge=0, le=3600)) -> HTMLResponse:
        """One project's dashboard page; an unknown project is a 404 like everywhere else."""
        from suggest.dashboard import data, pages

        view = data.project_view(engine_of(request), ls.project_key(project))
        return _page(pages.render_project(view, root=_ui_root(request), refresh=refresh))

    return app


_WARM_CONFIG = '<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="a"/><Choice value="b"/>' \
               '</Choices></View>'


def _import_before_listening(model_path: str | None) -> float:
    """The imports a first /setup and the encoder load would otherwise do while requests wait; seconds."""
    started = time.perf_counter()
    ls.parse_controls(_WARM_CONFIG)  # label-studio-sdk: 0.4 s of imports on the first /setup otherwise
    import_runtime(model_path)
    return time.perf_counter() - started


def _page(html: str) -> HTMLResponse:
    """A dashboard page: never cached, never framed by another site, no script but its own."""
    return HTMLResponse(html, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                   "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"})


def _ui_root(request: Request) -> str:
    """The dashboard's base path, honouring a reverse proxy's root_path."""
    return f"{request.scope.get('root_path', '').rstrip('/')}/ui/"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _task_id(row: dict[str, Item]) -> int | None:
    return next(iter(row.values())).task_id if row else None


def _project_of(body: PredictRequest) -> str:
    if body.project is None:
        raise BadInput("predict needs 'project' (Label Studio sends '<id>.<timestamp>')")
    return ls.project_key(body.project)


async def _json_object(request: Request) -> dict:
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput("the body is not valid JSON: it is nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadInput(f"the body must be a JSON object, got {type(payload).__name__}")
    return payload


async def _run_sync(fn, *args, request: Request | None = None):
    """`fn` on a worker thread. With `request`, where the time went is noted for the slow-answer log:
    waiting for a worker thread, or running."""
    from starlette.concurrency import run_in_threadpool

    if request is None:
        return await run_in_threadpool(fn, *args)
    submitted, began, waits = time.perf_counter(), [], []

    def timed():
        began.append(time.perf_counter())
        store_times_reset()
        try:
            return fn(*args)
        finally:
            waits.extend(store_times())

    try:
        return await run_in_threadpool(timed)
    finally:
        ended = time.perf_counter()
        if began:
            store = f" (the store: {waits[0] * 1000:.0f} ms waiting for its lock, {waits[1] * 1000:.0f} ms " \
                    "committing)" if waits else ""
            setattr(request.state, SPLIT_KEY, f"{(began[0] - submitted) * 1000:.0f} ms waiting for a thread, "
                                              f"{(ended - began[0]) * 1000:.0f} ms running{store}")


def _times(app) -> RequestTimes:
    """The RequestTimes middleware instance in the app's built stack."""
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, RequestTimes):
        layer = getattr(layer, "app", None)
    if layer is None:
        raise RuntimeError("RequestTimes middleware is not installed")
    return layer


def _handle_event(engine: Engine, event: ls.WebhookEvent, settings: Settings, signed: bool = False) -> dict:
    """Dispatch one webhook event. Every action is idempotent: the same event twice changes nothing.
    `signed`: it carried the project's webhook key (Engine.signed), so its annotation counts as sent.

    START_TRAINING may come without the webhook secret (Label Studio's ML client cannot send it), so
    it only ever queues a re-read and retrain of a project that exists: it never creates one and never
    changes a config.
    """
    if not event.handled:
        return {"status": "ignored", "action": event.action}
    _check_text(event.label_config, "project.label_config")
    if event.action == "START_TRAINING":
        engine.start_training(engine.webhook_project(event.project_id, None, create=False))
        return {"status": "ok", "action": event.action}
    project = engine.webhook_project(event.project_id, event.label_config)
    if event.action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        labels = event.labels(project.schemas)
        for label in labels:
            _check_text(label.text, f"task {label.task_id}: the data")
            _check_length(label.text, f"task {label.task_id}: the data", settings.max_text_chars)
        engine.record_annotation(project, event.annotation_id, labels, event.task_id, signed=signed,
                                 task_labelled=ls.task_labelled(event.task))
    elif event.action == "ANNOTATIONS_DELETED":
        engine.delete_annotations(project, list(event.annotation_ids))
    elif event.action == "TASKS_DELETED":
        engine.delete_tasks(project, list(event.task_ids))
    elif event.action == "TASKS_CREATED":
        engine.tasks_created(project)
    return {"status": "ok", "action": event.action}


def _numeric(pid: str) -> tuple[int, str]:
    return (int(pid), pid) if pid.isdigit() else (0, pid)


def _check_length(text: str, where: str, limit: int) -> None:
    if len(text) > limit:
        raise BadInput(f"{where} is {len(text):,} characters; at most {limit:,} (SUGGEST_MAX_TEXT_CHARS)")


def _check_text(text: str | None, where: str) -> None:
    """Text must be valid Unicode: a lone UTF-16 surrogate (JSON "\\ud800") cannot be stored or encoded."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInput(f"{where} is not valid Unicode: lone surrogate {text[exc.start]!r} at "
                       f"position {exc.start}") from None


def _printable(detail: str) -> str:
    """A message safe to send as UTF-8 JSON even when it quotes invalid input (lone surrogates)."""
    return detail.encode("utf-8", "backslashreplace").decode("utf-8")


def _webhook_allowed(request: Request, event: ls.WebhookEvent, secret: str, settings: Settings) -> bool:
    """X-Suggest-Secret matches, or valid basic auth, or START_TRAINING.

    START_TRAINING comes through Label Studio's ML client, which sends no custom headers (basic
    auth only, when configured); all it may do is make suggest re-read Label Studio and retrain.
    """
    sent = request.headers.get(SECRET_HEADER, "")
    if secrets.compare_digest(sent.encode(), secret.encode()):
        return True
    if credentials_ok(request.headers.get("authorization"), settings):
        return True
    return event.action == "START_TRAINING"


def credentials_ok(header: str | None, settings: Settings) -> bool:
    """The one credential check: an `Authorization: Basic` header equal to BASIC_AUTH_USER/PASS, timing-safe.
    False when basic auth is off: there is nothing to authenticate against."""
    if not settings.auth_enabled:
        return False
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    user_ok = secrets.compare_digest(user.encode(), (settings.basic_auth_user or "").encode())
    pass_ok = secrets.compare_digest(password.encode(), (settings.basic_auth_pass or "").encode())
    return user_ok and pass_ok


WEBHOOK_SCHEMA = {
    "type": "object",
    "description": "A Label Studio webhook event (extra keys are ignored)",
    "required": ["action"],
    "properties": {
        "action": {"type": "string", "enum": [
            "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED", "TASKS_DELETED",
            "START_TRAINING", "PROJECT_UPDATED", "PROJECT_CREATED"]},
        "project": {"type": "object", "properties": {"id": {"type": "integer"}, "label_config": {"type": "string"}}},
        "annotation": {"type": "object", "properties": {
            "id": {"type": "integer"}, "was_cancelled": {"type": "boolean"}, "ground_truth": {"type": "boolean"},
            "result": {"type": "array", "items": {"type": "object"}}, "task": {"type": "integer"}}},
        "task": {"type": "object", "properties": {"id": {"type": "integer"}, "data": {"type": "object"}}},
        "annotations": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        "tasks": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
    },
}


class BodyLimit:
    """ASGI middleware: 413 for a request body over the limit, counted as it streams in.

    A declared Content-Length over the limit is refused before reading; a chunked body is cut off as
    soon as it passes the limit, so an oversized body is never held in memory.
    """

    def __init__(self, app, max_bytes: int, limit_mb: float):
        self.app, self.max_bytes, self.limit_mb = app, max_bytes, limit_mb

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        seen, over, started = 0, False, False

        async def counted_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if over:  # whatever the app makes of the cut-off body, the answer is the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._too_large(send)

    async def _too_large(self, send) -> None:
        detail = (f"the request body is larger than the {self.limit_mb:g} MB limit; set {MAX_BODY_ENV} "
                  "to accept bigger requests")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _basic_auth(settings: Settings):
    """A dependency that checks HTTP basic auth when BASIC_AUTH_USER is set, else lets all through."""

    def check(request: Request) -> None:
        if settings.auth_enabled and not credentials_ok(request.headers.get("authorization"), settings):
            raise HTTPException(
                status_code=401, detail="basic auth required: send BASIC_AUTH_USER/BASIC_AUTH_PASS credentials",
                headers={"WWW-Authenticate": "Basic"},
            )

    return check


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """The header a client sends for basic auth (tests and the CLI use it)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
