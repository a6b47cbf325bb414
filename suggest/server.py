"""The Label Studio ML backend protocol over HTTP (FastAPI), thin: parse, call the engine, answer.

Routes follow label-studio-ml-backend 2.x: /health, /setup, /predict, /webhook, /versions, plus
/metrics. /health and /setup answer from memory; /webhook only records and returns (training
runs in the background); nothing slow runs inside a request Label Studio times out.
"""

from __future__ import annotations

import base64
import logging
import secrets
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, ConfigDict, Field

from suggest import __version__
from suggest import labelstudio as ls
from suggest.config import Settings
from suggest.engine import Engine, UnknownProject
from suggest.schema import BadInput, SchemaError

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
    results: list[dict[str, Any]]
    model_version: str


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = engine or Engine(settings)
        yield
        if engine is None:
            app.state.engine.close()

    app = FastAPI(
        title="suggest",
        version=__version__,
        description="Active-learning label suggestions for Label Studio (ML backend protocol).",
        lifespan=lifespan,
    )
    guard = _basic_auth(settings)

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(SchemaError)
    async def bad_schema(_: Request, exc: SchemaError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(UnknownProject)
    async def unknown_project(_: Request, exc: UnknownProject) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems), "errors": problems})

    def engine_of(request: Request) -> Engine:
        return request.app.state.engine

    @app.get("/health", summary="Liveness, from memory; never needs credentials")
    def health(request: Request) -> dict:
        eng = engine_of(request)
        return {"status": "UP", "model_class": "EmbeddingClassifier", "encoder_loaded": eng.encoder.loaded}

    @app.post("/setup", response_model=SetupResponse, dependencies=[Depends(guard)])
    def setup(body: SetupRequest, request: Request) -> SetupResponse:
        project = engine_of(request).setup(
            ls.project_key(body.project), body.schema_, body.hostname, body.access_token
        )
        return SetupResponse(model_version=project.model_version)

    @app.post("/predict", response_model=PredictResponse, dependencies=[Depends(guard)])
    def predict(body: PredictRequest, request: Request) -> PredictResponse:
        eng = engine_of(request)
        project = eng.project(_project_of(body), body.label_config)
        items, positions, results = [], [], []
        version = project.model_version
        for i, task in enumerate(body.tasks):
            try:
                items.append(ls.task_item(task, project.schema))
                positions.append(i)
            except BadInput as exc:
                if len(body.tasks) == 1:
                    raise
                log.warning("predict: skipping task %d of %d: %s", i, len(body.tasks), exc)
            results.append(None)
        predictions = project.predict(items)
        if predictions:
            version = predictions[0].model_version
        for pos, pred in zip(positions, predictions, strict=True):
            results[pos] = ls.prediction_json(pred, project.schema)
        filled = [r if r is not None else ls.empty_prediction(version) for r in results]
        return PredictResponse(results=filled, model_version=version)

    @app.post("/webhook", summary="Label Studio events; answers at once, trains in the background")
    async def webhook(request: Request) -> dict:
        payload = await _json_object(request)
        return await _run_sync(_handle_event, engine_of(request), payload)

    @app.get("/versions", dependencies=[Depends(guard)])
    def versions(request: Request, project: str | None = None) -> dict:
        eng = engine_of(request)
        ids = [ls.project_key(project)] if project else list(eng.projects)
        names: list[str] = []
        for pid in ids:
            proj = eng.project(pid)
            names += [v.version for v in eng.store.versions(pid)]
            if proj.published.record is None:
                names.append(proj.model_version)
        return {"versions": names}

    @app.get("/metrics", dependencies=[Depends(guard)])
    def metrics(request: Request, project: str | None = None) -> dict:
        return engine_of(request).metrics(ls.project_key(project) if project else None)

    return app


def _project_of(body: PredictRequest) -> str:
    if body.project is None:
        raise BadInput("predict needs 'project' (Label Studio sends '<id>.<timestamp>')")
    return ls.project_key(body.project)


async def _json_object(request: Request) -> dict:
    import json

    raw = await request.body()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadInput(f"the body must be a JSON object, got {type(payload).__name__}")
    return payload


async def _run_sync(fn, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def _handle_event(engine: Engine, payload: dict) -> dict:
    """Dispatch one webhook event. Every action is idempotent: the same event twice changes nothing."""
    action = payload.get("action")
    if not isinstance(action, str):
        raise BadInput("the event has no 'action'")
    if action not in HANDLED_ACTIONS:
        return {"status": "ignored", "action": action}
    project_json = payload.get("project")
    config = project_json.get("label_config") if isinstance(project_json, dict) else None
    project = engine.project(ls.project_key(project_json), config)
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        annotation = payload.get("annotation")
        label = ls.annotation_label(annotation, payload.get("task"), project.schema)
        engine.record_annotation(project, annotation["id"], label)
    elif action == "ANNOTATIONS_DELETED":
        engine.delete_annotations(project, ls.annotation_ids(payload))
    elif action == "TASKS_DELETED":
        engine.delete_tasks(project, ls.task_ids(payload))
    elif action == "TASKS_CREATED":
        engine.tasks_created(project)
    elif action == "START_TRAINING":
        engine.start_training(project)
    return {"status": "ok", "action": action}


HANDLED_ACTIONS = {
    "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED", "TASKS_DELETED",
    "START_TRAINING", "PROJECT_UPDATED",
}


def _basic_auth(settings: Settings):
    """A dependency that checks HTTP basic auth when BASIC_AUTH_USER is set, else lets all through."""
    security = HTTPBasic(auto_error=False)

    def check(credentials: HTTPBasicCredentials | None = Depends(security)) -> None:
        if not settings.auth_enabled:
            return
        ok = credentials is not None and secrets.compare_digest(
            credentials.username.encode(), (settings.basic_auth_user or "").encode()
        ) and secrets.compare_digest(credentials.password.encode(), (settings.basic_auth_pass or "").encode())
        if not ok:
            raise HTTPException(
                status_code=401, detail="basic auth required: send BASIC_AUTH_USER/BASIC_AUTH_PASS credentials",
                headers={"WWW-Authenticate": "Basic"},
            )

    return check


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """The header a client sends for basic auth (tests and the CLI use it)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
