"""Settings in one place: defaults, then the environment (the ecosystem's names), then CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

UNCERTAINTY_METHODS = ("margin", "least_confidence", "entropy")
TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path("models")
    host: str = "0.0.0.0"
    port: int = 9090
    label_studio_url: str | None = None  # overrides the hostname Label Studio sends in /setup
    label_studio_api_key: str | None = None  # overrides the access_token sent in /setup
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = None
    uncertainty: str = "margin"
    batch_size: int = 50  # the diverse, uncertain batch that goes first in Label Studio's queue
    strategy: str = "auto"  # "auto" (dense for text, diverse for images), a name from suggest.strategies, or modal:...
    push: bool = True  # re-rank the pool in Label Studio after each version
    set_sampling: bool = True  # switch the project to uncertainty sampling when pushing
    push_interval_seconds: float = 15.0  # min seconds between pushes (and syncs) to Label Studio per project
    keep_versions: int = 0  # >0: only suggest's newest N versions keep their predictions in Label Studio
    debounce_seconds: float = 0.3
    max_delay_seconds: float = 3.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict = {
            "model_dir": env.get("MODEL_DIR"),
            "host": env.get("HOST"),
            "port": env.get("PORT"),
            "label_studio_url": env.get("LABEL_STUDIO_URL") or env.get("LABEL_STUDIO_HOST"),
            "label_studio_api_key": env.get("LABEL_STUDIO_API_KEY"),
            "basic_auth_user": env.get("BASIC_AUTH_USER"),
            "basic_auth_pass": env.get("BASIC_AUTH_PASS"),
            "uncertainty": env.get("SUGGEST_UNCERTAINTY"),
            "debounce_seconds": env.get("SUGGEST_DEBOUNCE_SECONDS"),
            "batch_size": env.get("SUGGEST_BATCH_SIZE"),
            "push_interval_seconds": env.get("SUGGEST_PUSH_INTERVAL_SECONDS"),
            "strategy": env.get("SUGGEST_STRATEGY"),
            "push": env.get("SUGGEST_PUSH"),
            "set_sampling": env.get("SUGGEST_SET_SAMPLING"),
            "keep_versions": env.get("SUGGEST_KEEP_VERSIONS"),
            "log_level": env.get("LOG_LEVEL"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})  # unset flags keep env
        types = {f.name: f.type for f in fields(cls)}
        clean = {}
        for name, value in values.items():
            if value is None or value == "":
                continue
            kind = types[name]
            if kind == "Path":
                clean[name] = Path(value)
            elif kind == "int":
                clean[name] = int(value)
            elif kind == "float":
                clean[name] = float(value)
            elif kind == "bool":
                clean[name] = value if isinstance(value, bool) else str(value).strip().lower() in TRUTHY
            else:
                clean[name] = str(value)
        settings = replace(cls(), **clean)
        if settings.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {settings.batch_size}")
        if settings.keep_versions < 0:
            raise ValueError(f"keep_versions must be 0 (keep all) or more, got {settings.keep_versions}")
        if settings.uncertainty not in UNCERTAINTY_METHODS:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTY_METHODS}, got {settings.uncertainty!r}")
        return settings

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)
