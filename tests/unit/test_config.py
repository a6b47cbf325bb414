"""Settings precedence: defaults < environment (the ecosystem's names) < explicit flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from suggest.config import Settings


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
    with pytest.raises(ValueError, match="keep_versions"):
        Settings.from_env({"SUGGEST_KEEP_VERSIONS": "-1"})
