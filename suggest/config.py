"""Settings in one place: defaults, then the environment (the ecosystem's names), then CLI flags.

Every setting `suggest` reads is read here and checked when the process starts: a bad value is one
`SettingsError` line naming the variable (and flag) and what it accepts, not a traceback at first use.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

UNCERTAINTY_METHODS = ("margin", "least_confidence", "entropy")
CONSENSUS_RULES = ("majority", "weighted")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUTHY = {"1", "true", "yes", "on"}
FALSY = {"0", "false", "no", "off"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_][a-z0-9_-]{0,62})*\.?$")
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting suggest cannot use; the message names the environment variable (or flag) and what is allowed."""


@dataclass(frozen=True)
class Source:
    """Where a setting comes from: environment variables (the first set one wins) and the CLI flag, if any."""

    env: tuple[str, ...]
    flag: str | None = None

    @property
    def label(self) -> str:
        """How error messages name the setting, e.g. 'PORT (--port)'."""
        names = " or ".join(self.env)
        return f"{names} ({self.flag})" if self.flag else names


SOURCES: dict[str, Source] = {
    "model_dir": Source(("MODEL_DIR",), "--model-dir"),
    "host": Source(("HOST",), "--host"),
    "port": Source(("PORT",), "--port"),
    "label_studio_url": Source(("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST")),
    "label_studio_api_key": Source(("LABEL_STUDIO_API_KEY",)),
    "basic_auth_user": Source(("BASIC_AUTH_USER",)),
    "basic_auth_pass": Source(("BASIC_AUTH_PASS",)),
    "webhook_secret": Source(("SUGGEST_WEBHOOK_SECRET",)),
    "sign_webhooks": Source(("SUGGEST_SIGN_WEBHOOKS",)),
    "max_body_mb": Source(("SUGGEST_MAX_BODY_MB",)),
    "max_tasks_per_request": Source(("SUGGEST_MAX_TASKS_PER_REQUEST",)),
    "max_text_chars": Source(("SUGGEST_MAX_TEXT_CHARS",)),
    "local_files_root": Source(("LOCAL_FILES_DOCUMENT_ROOT", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")),
    "media_allow_hosts": Source(("SUGGEST_MEDIA_ALLOW_HOSTS",)),
    "media_deadline_seconds": Source(("SUGGEST_MEDIA_DEADLINE_SECONDS",)),
    "memory_budget_mb": Source(("SUGGEST_MEMORY_MB",)),
    "text_encoder": Source(("SUGGEST_TEXT_ENCODER",)),
    "text_classifier": Source(("SUGGEST_TEXT_CLASSIFIER",)),
    "image_encoder": Source(("SUGGEST_IMAGE_ENCODER",)),
    "model_class": Source(("SUGGEST_MODEL_CLASS",), "--model"),
    "uncertainty": Source(("SUGGEST_UNCERTAINTY",), "--uncertainty"),
    "batch_size": Source(("SUGGEST_BATCH_SIZE",), "--batch-size"),
    "strategy": Source(("SUGGEST_STRATEGY",), "--strategy"),
    "push": Source(("SUGGEST_PUSH",)),
    "set_sampling": Source(("SUGGEST_SET_SAMPLING",)),
    "push_interval_seconds": Source(("SUGGEST_PUSH_INTERVAL_SECONDS",)),
    "keep_versions": Source(("SUGGEST_KEEP_VERSIONS",)),
    "background_nice": Source(("SUGGEST_BACKGROUND_NICE",)),
    "background_threads": Source(("SUGGEST_BACKGROUND_THREADS",)),
    "gil_switch_ms": Source(("SUGGEST_GIL_SWITCH_MS",)),
    "slow_answer_ms": Source(("SUGGEST_SLOW_ANSWER_MS",)),
    "finetune_min_labels": Source(("SUGGEST_FINETUNE_MIN_LABELS",)),
    "debounce_seconds": Source(("SUGGEST_DEBOUNCE_SECONDS",)),
    "max_delay_seconds": Source(("SUGGEST_MAX_DELAY_SECONDS",)),
    "log_level": Source(("LOG_LEVEL",), "--log-level"),
    "consensus": Source(("SUGGEST_CONSENSUS",)),
    "audit_fraction": Source(("SUGGEST_AUDIT_FRACTION",)),
    "queue_head": Source(("SUGGEST_QUEUE_HEAD",)),
    "prune_chunk": Source(("SUGGEST_PRUNE_CHUNK",)),
    "push_duty": Source(("SUGGEST_PUSH_DUTY",)),
    "reconcile_seconds": Source(("SUGGEST_RECONCILE_SECONDS",)),
    "ray_address": Source(("SUGGEST_RAY_ADDRESS",), "--ray"),
}


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path("models")
    host: str = "0.0.0.0"
    port: int = 9090
    label_studio_url: str | None = None  # overrides the hostname Label Studio sends in /setup
    label_studio_api_key: str | None = field(default=None, repr=False)  # overrides the access_token from /setup
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)  # webhooks must carry it in X-Suggest-Secret
    sign_webhooks: bool = True  # put a per-project key in suggest's webhook in Label Studio: no re-read per save
    max_body_mb: float = 50.0  # larger request bodies get a 413
    max_tasks_per_request: int = 1000  # tasks in one /predict
    max_text_chars: int = 1_000_000  # characters in one task's text
    local_files_root: Path | None = None  # Label Studio's Local Storage root, when this host shares it
    media_allow_hosts: tuple[str, ...] = ()  # private/loopback hosts, IPs or CIDRs image URLs may still reach
    media_deadline_seconds: float = 30.0  # the longest fetching one image may take
    memory_budget_mb: int = 1024  # process-wide cap for the in-memory caches
    text_encoder: str | None = None  # a local model folder (or cached hub id) replacing the packaged MiniLM
    text_classifier: str | None = None  # a transformers text-classification folder: pre-annotates, then a prior
    image_encoder: str | None = None  # a transformers vision model folder replacing EfficientNet-Lite0
    model_class: str | None = None  # package.module:Class in the LabelStudioMLBase shape, hosted instead
    uncertainty: str = "margin"
    batch_size: int = 50  # the diverse, uncertain batch that goes first in Label Studio's queue
    strategy: str = "auto"  # "auto" (dense for text, diverse for images), a name from suggest.strategies, or modal:...
    push: bool = True  # re-rank the pool in Label Studio after each version
    set_sampling: bool = True  # switch the project to uncertainty sampling when pushing
    push_interval_seconds: float = 15.0  # min seconds between pushes (and syncs) to Label Studio per project
    keep_versions: int = 0  # >0: only suggest's newest N versions keep their predictions in Label Studio
    background_nice: int = 10  # niceness added to background work (training, embedding, pushes); 0 to 19
    background_threads: int = 0  # torch threads for background work; 0: all cores but one (at least 1)
    gil_switch_ms: float = 0.5  # `suggest serve`: longest a request thread waits for the GIL (Python's default: 5)
    slow_answer_ms: float = 250.0  # answers at least this slow are logged with when they started; 0: none
    finetune_min_labels: int = 0  # issue 16: tune the text encoder in the background from this many labels; 0: off
    debounce_seconds: float = 0.3
    max_delay_seconds: float = 3.0
    log_level: str = "INFO"
    consensus: str = "majority"  # which label a task with several annotations trains on (suggest.quality.consensus)
    audit_fraction: float = 0.05  # issue 14: share of each batch drawn at random from the pool (0: no audit slice)
    queue_head: int = 1000  # predictions pushed per version: the queue's head (0: every unlabelled task)
    push_duty: float = 0.1  # after a head's first slice: most of the time its writes may keep Label Studio busy
    prune_chunk: int = 50  # superseded predictions deleted per step (one call each) while annotators pause; 0: off
    reconcile_seconds: float = 300.0  # task list checked for deletions, annotations re-read in full (START_TRAINING)
    ray_address: str | None = None  # a Ray cluster for pool embedding ("auto", "ray://host:10001", host:port)

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `env` (os.environ when None), then `overrides` that are not None (unset CLI flags)."""
        env = dict(os.environ if env is None else env)
        types = {f.name: f.type for f in fields(cls)}
        unknown = set(overrides) - set(types)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {}
        for name, kind in types.items():
            value, origin = overrides.get(name), SOURCES[name].flag or name
            if value is None:
                origin = next((var for var in SOURCES[name].env if env.get(var, "").strip()), "")
                value = env.get(origin) if origin else None
            if value is not None and value != "":
                clean[name] = _parse(name, kind, value, origin)
        return replace(cls(), **clean)

    @property
    def background_thread_budget(self) -> int:
        """Torch threads background work may use: SUGGEST_BACKGROUND_THREADS, or leave one core free."""
        return self.background_threads or max(1, (os.cpu_count() or 1) - 1)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)

    def exposure_warning(self) -> str | None:
        """A warning when anyone on the network can drive this backend: a non-loopback address, no basic auth."""
        if self.auth_enabled or is_loopback(self.host):
            return None
        return (f"suggest listens on {self.host}:{self.port} without basic auth: anyone on the network can reach "
                "/setup and /predict (and send /webhook events). Set BASIC_AUTH_USER and BASIC_AUTH_PASS, or serve "
                "on --host 127.0.0.1 (HOST) if Label Studio runs on this machine, and set SUGGEST_WEBHOOK_SECRET.")


def _parse(name: str, kind: str, value: Any, origin: str) -> Any:
    """One raw value (an environment string or a flag's value) as the field's type; `origin` names it on error."""
    text = str(value).strip()
    if kind in ("Path", "Path | None"):
        return Path(value)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{origin} must be an integer, got {text!r}") from None
    if kind == "float":
        try:
            return float(value) if isinstance(value, int | float) else float(text)
        except ValueError:
            raise SettingsError(f"{origin} must be a number, got {text!r}") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text.lower() in TRUTHY | FALSY:
            return text.lower() in TRUTHY
        raise SettingsError(f"{origin} must be true or false (1/0, yes/no, on/off), got {text!r}")
    if kind == "tuple[str, ...]":
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(item).strip().lower() for item in items if str(item).strip())
    if name == "log_level":
        return text.upper()
    return str(value)


def _check(s: Settings) -> None:
    """Refuse values that would fail later (or silently do something else); one line each."""

    def bad(name: str, allowed: str, value: Any) -> SettingsError:
        return SettingsError(f"{SOURCES[name].label} must be {allowed}, got {value!r}")

    if not 1 <= s.port <= 65535:
        raise bad("port", "a port number from 1 to 65535", s.port)
    if not s.host.strip():
        raise bad("host", "an interface address such as 0.0.0.0 or 127.0.0.1", s.host)
    for name in ("batch_size", "max_tasks_per_request", "max_text_chars", "memory_budget_mb"):
        if getattr(s, name) < 1:
            raise bad(name, "a whole number of 1 or more", getattr(s, name))
    if s.queue_head < 0:
        raise bad("queue_head", "0 (push every unlabelled task) or a number of tasks", s.queue_head)
    if not (math.isfinite(s.push_duty) and 0.01 <= s.push_duty <= 1):
        raise bad("push_duty", "a share of the time from 0.01 to 1 (1: write the head without resting)", s.push_duty)
    if s.prune_chunk < 0:
        raise bad("prune_chunk", "0 (never prune) or a number of predictions", s.prune_chunk)
    if s.keep_versions < 0:
        raise bad("keep_versions", "0 (keep all) or more", s.keep_versions)
    if not 0 <= s.background_nice <= 19:
        raise bad("background_nice", "a niceness from 0 (as requests) to 19 (lowest)", s.background_nice)
    if s.background_threads < 0:
        raise bad("background_threads", "0 (all cores but one) or a number of threads", s.background_threads)
    if not (math.isfinite(s.gil_switch_ms) and 0.05 <= s.gil_switch_ms <= 100):
        raise bad("gil_switch_ms", "milliseconds from 0.05 to 100 (Python's default is 5)", s.gil_switch_ms)
    if not (math.isfinite(s.slow_answer_ms) and s.slow_answer_ms >= 0):
        raise bad("slow_answer_ms", "0 (log none) or milliseconds", s.slow_answer_ms)
    if s.finetune_min_labels < 0:
        raise bad("finetune_min_labels", "0 (no fine-tuning) or a number of labels", s.finetune_min_labels)
    for name in ("debounce_seconds", "max_delay_seconds", "push_interval_seconds", "media_deadline_seconds",
                 "max_body_mb", "reconcile_seconds"):
        value = getattr(s, name)
        if not (math.isfinite(value) and value > 0):
            raise bad(name, "a number greater than 0", value)
    if s.uncertainty not in UNCERTAINTY_METHODS:
        raise bad("uncertainty", f"one of {', '.join(UNCERTAINTY_METHODS)}", s.uncertainty)
    if not (math.isfinite(s.audit_fraction) and 0 <= s.audit_fraction <= 1):
        raise bad("audit_fraction", "a number from 0 (no audit slice) to 1", s.audit_fraction)
    if s.consensus not in CONSENSUS_RULES:
        raise bad("consensus", f"one of {', '.join(CONSENSUS_RULES)}", s.consensus)
    if s.log_level.upper() not in LOG_LEVELS:
        raise bad("log_level", f"one of {', '.join(LOG_LEVELS)}", s.log_level)
    _check_strategy(s.strategy)
    _check_user_models(s)
    for entry in s.media_allow_hosts:
        if not _is_host_or_network(entry):
            raise bad("media_allow_hosts", "comma-separated host names, IP addresses or CIDR ranges "
                      "(e.g. minio,10.0.0.0/8), without scheme or port", entry)
    if s.label_studio_url is not None:
        parts = urlsplit(s.label_studio_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad("label_studio_url", "an http(s) URL such as http://label-studio:8080",
                      redact_url(s.label_studio_url))
    if s.label_studio_api_key and not s.label_studio_url:
        raise SettingsError("LABEL_STUDIO_API_KEY is set but LABEL_STUDIO_URL (or LABEL_STUDIO_HOST) is not: "
                            "set both, or neither (a token is only ever sent to the URL it came with)")
    if bool(s.basic_auth_user) != bool(s.basic_auth_pass):
        given, missing = ("BASIC_AUTH_USER", "BASIC_AUTH_PASS") if s.basic_auth_user else \
            ("BASIC_AUTH_PASS", "BASIC_AUTH_USER")
        raise SettingsError(f"{given} is set but {missing} is empty: set both to turn basic auth on, or neither")


def _check_strategy(name: str) -> None:
    """"auto", a registered strategy name, or a modal:<module>:<function> that imports (checked now, not at push)."""
    if name == "auto":
        return
    from suggest.strategies import STRATEGIES, make_strategy  # lazy: numpy and scikit-learn

    label = SOURCES["strategy"].label
    if name.startswith("modal:"):
        try:
            make_strategy(name)
        except (ValueError, ImportError, TypeError) as exc:
            raise SettingsError(f"{label}: {exc} (expected modal:<module>:<function>)") from None
    elif name not in STRATEGIES:
        raise SettingsError(f"{label} must be auto, {', '.join(STRATEGIES)} or modal:<module>:<function>, "
                            f"got {name!r}")


def _check_user_models(s: Settings) -> None:
    """Model folders have config, weights and tokenizer, a model class imports: one line naming the setting now,
    not a traceback when the first task arrives (suggest.serve loads them too, before it listens)."""
    from backends.pipeline import parse_classifiers
    from backends.user_encoder import ModelFolderError, check_model_folder

    try:
        if s.text_encoder:
            check_model_folder(s.text_encoder)
    except ModelFolderError as exc:
        raise SettingsError(f"{SOURCES['text_encoder'].label}: {exc}") from None
    try:
        if s.image_encoder:
            from backends.user_image_encoder import check_image_model_folder

            check_image_model_folder(s.image_encoder)
    except ModelFolderError as exc:
        raise SettingsError(f"{SOURCES['image_encoder'].label}: {exc}") from None
    try:
        for folder in parse_classifiers(s.text_classifier).values():
            check_model_folder(folder, classifier=True)
    except (ModelFolderError, ValueError) as exc:
        raise SettingsError(f"{SOURCES['text_classifier'].label}: {exc}") from None
    if s.model_class:
        from suggest.mlbase import ModelClassError, import_model_class

        try:
            import_model_class(s.model_class)
        except ModelClassError as exc:
            raise SettingsError(f"{SOURCES['model_class'].label}: {exc}") from None


def _is_host_or_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(entry))


def is_loopback(host: str) -> bool:
    """Whether `host` (an interface to listen on) is reachable only from this machine."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "ip6-localhost") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def redact_url(url: str | None) -> str | None:
    """The URL without `user:pass@` (and without query or fragment, where tokens also ride): safe to log or show."""
    if url is None:
        return None
    text = str(url).strip()
    bare = "://" not in text  # "user:pass@host:8080" parses as scheme "user" otherwise
    try:
        parts = urlsplit("//" + text if bare else text)
    except ValueError:  # e.g. an unclosed IPv6 bracket: still never show the userinfo
        return redact_text(text.split("?", 1)[0].split("#", 1)[0])
    out = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return out.removeprefix("//") if bare else out


def redact_text(text: str) -> str:
    """Free text (an error message, a log line) with the `user:pass@` of any URL in it removed."""
    return _USERINFO.sub(r"\1", text)
