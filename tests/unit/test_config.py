"""Settings precedence: defaults < environment (the ecosystem's names) < explicit flags."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from suggest.config import SOURCES, Settings, SettingsError, redact_text, redact_url
from suggest.strategies import STRATEGIES


def test_environment_names_of_the_ecosystem_are_read():
    s = Settings.from_env({"MODEL_DIR": "/data/m", "PORT": "9191", "LABEL_STUDIO_URL": "http://ls:8080",
                           "LABEL_STUDIO_API_KEY": "k", "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p"})
    assert (s.model_dir, s.port, s.label_studio_url, s.label_studio_api_key) == (Path("/data/m"), 9191,
                                                                                 "http://ls:8080", "k")
    assert s.auth_enabled


def test_unset_flags_keep_the_environment_and_set_flags_win():
    env = {"MODEL_DIR": "/data/m", "PORT": "9191"}
    kept = Settings.from_env(env, model_dir=None, port=None)
    assert (kept.model_dir, kept.port) == (Path("/data/m"), 9191)
    assert Settings.from_env(env, port=7000).port == 7000


def test_defaults_and_a_bad_value_is_named():
    s = Settings.from_env({})
    assert (s.model_dir, s.host, s.port, s.uncertainty, s.auth_enabled) == (Path("models"), "0.0.0.0", 9090,
                                                                            "margin", False)
    with pytest.raises(ValueError, match="uncertainty"):
        Settings.from_env({"SUGGEST_UNCERTAINTY": "vibes"})


def test_keep_versions_is_read_and_a_negative_count_is_refused():
    assert Settings.from_env({}).keep_versions == 0  # Label Studio's own behaviour: every version stays
    assert Settings.from_env({"SUGGEST_KEEP_VERSIONS": "3"}).keep_versions == 3
    with pytest.raises(ValueError, match="SUGGEST_KEEP_VERSIONS"):
        Settings.from_env({"SUGGEST_KEEP_VERSIONS": "-1"})


# ---- every setting read here, documented, and checked at start (issue 11) --------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _configuration_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Configuration")
    return readme[start:readme.index("\n## ", start + 1)]


def test_every_setting_has_a_source_and_each_variable_is_in_the_readme_table():
    table = _configuration_section()
    assert set(SOURCES) == {f.name for f in fields(Settings)}
    missing = [var for source in SOURCES.values() for var in source.env if f"`{var}`" not in table]
    assert not missing, f"not in README's Configuration table: {missing}"


def test_settings_read_elsewhere_before_are_read_here_with_their_defaults():
    s = Settings.from_env({})
    assert (s.max_body_mb, s.webhook_secret, s.local_files_root, s.media_allow_hosts) == (50.0, None, None, ())
    assert (s.max_tasks_per_request, s.max_text_chars, s.media_deadline_seconds, s.memory_budget_mb) == (
        1000, 1_000_000, 30.0, 1024)
    s = Settings.from_env({"SUGGEST_MAX_BODY_MB": "0.5", "SUGGEST_WEBHOOK_SECRET": "shh",
                           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": "/srv/files",
                           "SUGGEST_MEDIA_ALLOW_HOSTS": " MinIO, 10.0.0.0/8,,fd00::1 ",
                           "SUGGEST_MAX_TASKS_PER_REQUEST": "10", "SUGGEST_MAX_TEXT_CHARS": "500",
                           "SUGGEST_MEDIA_DEADLINE_SECONDS": "2.5", "SUGGEST_MEMORY_MB": "256",
                           "SUGGEST_MAX_DELAY_SECONDS": "9"})
    assert (s.max_body_mb, s.webhook_secret, s.local_files_root) == (0.5, "shh", Path("/srv/files"))
    assert s.media_allow_hosts == ("minio", "10.0.0.0/8", "fd00::1")
    assert (s.max_tasks_per_request, s.max_text_chars, s.media_deadline_seconds, s.memory_budget_mb,
            s.max_delay_seconds) == (10, 500, 2.5, 256, 9.0)
    both = {"LOCAL_FILES_DOCUMENT_ROOT": "/a", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": "/b"}
    assert Settings.from_env(both).local_files_root == Path("/a")  # Label Studio's own name first
    assert Settings.from_env({"LABEL_STUDIO_HOST": "http://ls:8080"}).label_studio_url == "http://ls:8080"


def test_a_value_that_is_not_a_number_is_one_line_naming_the_variable():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PORT": "abc"})
    assert str(caught.value) == "PORT must be an integer, got 'abc'"
    with pytest.raises(SettingsError, match="SUGGEST_MAX_BODY_MB must be a number, got 'lots'"):
        Settings.from_env({"SUGGEST_MAX_BODY_MB": "lots"})
    with pytest.raises(SettingsError, match="SUGGEST_PUSH must be true or false"):
        Settings.from_env({"SUGGEST_PUSH": "flase"})  # used to read as False, silently
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize("var", ["SUGGEST_DEBOUNCE_SECONDS", "SUGGEST_PUSH_INTERVAL_SECONDS",
                                 "SUGGEST_MAX_DELAY_SECONDS", "SUGGEST_MEDIA_DEADLINE_SECONDS", "SUGGEST_MAX_BODY_MB"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_intervals_must_be_positive_and_finite(var, value):
    with pytest.raises(SettingsError, match=f"{var} must be a number greater than 0"):
        Settings.from_env({var: value})


@pytest.mark.parametrize("var", ["SUGGEST_BATCH_SIZE", "SUGGEST_MAX_TASKS_PER_REQUEST", "SUGGEST_MAX_TEXT_CHARS",
                                 "SUGGEST_MEMORY_MB"])
def test_counts_must_be_positive(var):
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: "-5"})


@pytest.mark.parametrize(("env", "names"), [
    ({"PORT": "70000"}, "PORT (--port)"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL (--log-level) must be one of DEBUG, INFO"),
    ({"LABEL_STUDIO_URL": "localhost:8080"}, "LABEL_STUDIO_URL or LABEL_STUDIO_HOST must be an http(s) URL"),
    ({"SUGGEST_MEDIA_ALLOW_HOSTS": "minio,http://cache:9000"}, "SUGGEST_MEDIA_ALLOW_HOSTS"),
    ({"SUGGEST_PUSH_DUTY": "0"}, "SUGGEST_PUSH_DUTY must be a share of the time from 0.01 to 1"),
    ({"SUGGEST_PUSH_DUTY": "1.5"}, "SUGGEST_PUSH_DUTY must be a share of the time from 0.01 to 1"),
])
def test_out_of_range_values_name_the_setting_and_what_it_accepts(env, names):
    with pytest.raises(SettingsError, match=re.escape(names)):
        Settings.from_env(env)


def test_the_strategy_is_checked_at_start_not_at_the_first_push():
    with pytest.raises(SettingsError, match=r"SUGGEST_STRATEGY \(--strategy\) must be auto, .*dense.*modal:"):
        Settings.from_env({"SUGGEST_STRATEGY": "densee"})
    with pytest.raises(SettingsError, match="cannot import"):
        Settings.from_env({"SUGGEST_STRATEGY": "modal:json:no_such_function"})
    for name in ("auto", *STRATEGIES, "modal:json:dumps"):
        assert Settings.from_env({"SUGGEST_STRATEGY": name}).strategy == name
    assert Settings.from_env({}, strategy="margin").strategy == "margin"


def test_a_token_without_its_url_is_refused():
    with pytest.raises(SettingsError, match="LABEL_STUDIO_API_KEY is set but LABEL_STUDIO_URL"):
        Settings.from_env({"LABEL_STUDIO_API_KEY": "secret-token"})
    ok = Settings.from_env({"LABEL_STUDIO_API_KEY": "k", "LABEL_STUDIO_HOST": "http://ls:8080"})
    assert (ok.label_studio_url, ok.label_studio_api_key) == ("http://ls:8080", "k")


@pytest.mark.parametrize(("env", "message"), [
    ({"BASIC_AUTH_PASS": "pw"}, "BASIC_AUTH_PASS is set but BASIC_AUTH_USER is empty"),
    ({"BASIC_AUTH_USER": "ann"}, "BASIC_AUTH_USER is set but BASIC_AUTH_PASS is empty"),
])
def test_half_of_basic_auth_is_refused(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_secrets_never_show_in_the_settings_repr():
    s = Settings.from_env({"LABEL_STUDIO_URL": "http://ls:8080", "LABEL_STUDIO_API_KEY": "tok-123",
                           "BASIC_AUTH_USER": "ann", "BASIC_AUTH_PASS": "pw-456", "SUGGEST_WEBHOOK_SECRET": "wh-789"})
    assert not {"tok-123", "pw-456", "wh-789"} & set(re.findall(r"[\w-]+", repr(s)))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "backend.example.org"])
def test_serving_on_the_network_without_auth_is_warned_about(host):
    warning = Settings(host=host).exposure_warning()
    assert warning and "/setup" in warning and "/predict" in warning
    assert all(fix in warning for fix in ("BASIC_AUTH_USER", "127.0.0.1", "SUGGEST_WEBHOOK_SECRET"))
    assert Settings(host=host, basic_auth_user="ann", basic_auth_pass="pw").exposure_warning() is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_warning(host):
    assert Settings(host=host).exposure_warning() is None


@pytest.mark.parametrize(("url", "shown"), [
    ("http://ann:s3cret@ls.example:8080/label-studio/", "http://ls.example:8080/label-studio/"),
    ("https://token@ls:8443", "https://ls:8443"),
    ("http://ls:8080/api?token=abc#x", "http://ls:8080/api"),
    ("http://[::1]:8080/", "http://[::1]:8080/"),
    ("ann:s3cret@ls:8080", "ls:8080"),
    ("http://ann:s3cret@[::1", "http://[::1"),
    (None, None),
])
def test_redact_url_drops_credentials_and_keeps_where_it_points(url, shown):
    assert redact_url(url) == shown


def test_redact_text_removes_credentials_from_urls_inside_a_message():
    message = "ConnectError for http://ann:s3cret@localhost:8080/api/projects: refused"
    assert redact_text(message) == "ConnectError for http://localhost:8080/api/projects: refused"
