"""suggest.engine on its own: which Label Studio a project's token may go to, and when a /setup may change it."""

from __future__ import annotations

import pytest

from suggest.config import Settings
from suggest.engine import Engine, HostChangeRefused, _host
from tests.conftest import CONFIG


@pytest.fixture
def engine(tmp_path):
    eng = Engine(Settings.from_env({}, model_dir=tmp_path, push=False), load_encoder=False)
    yield eng
    eng.close()


def test_the_same_host_in_other_spellings():
    assert _host("HTTP://Example.org") == _host("http://example.org:80/") == "http://example.org:80"
    assert _host("http://user:pw@example.org:8080/x") == "http://example.org:8080"
    assert _host("https://example.org") != _host("http://example.org")


def test_credentials_are_one_pair_and_a_setup_without_them_keeps_them(engine):
    project = engine.setup("7", CONFIG, "http://ls.example:8080", "tok")
    engine.setup("7", CONFIG, "http://other.example", None)  # a stranger's setup, no token
    assert engine.client(project).url == "http://ls.example:8080"
    assert engine.store.projects()[0].hostname == "http://ls.example:8080"


def test_a_confirmed_host_cannot_be_moved_without_auth_but_can_with_it(engine):
    engine.setup("7", CONFIG, "http://ls.example:8080", "tok")
    engine._confirmed["7"] = _host("http://ls.example:8080")  # what a successful sync records
    with pytest.raises(HostChangeRefused):
        engine.setup("7", CONFIG, "http://evil.example", "their-token")
    assert engine.store.projects()[0].access_token == "tok"
    engine.setup("7", CONFIG, "http://ls2.example", "new", authenticated=True)
    record = engine.store.projects()[0]
    assert (record.hostname, record.access_token) == ("http://ls2.example", "new")
    assert engine._confirmed["7"] == "http://ls.example:8080", "the new host is not confirmed until it proves itself"


def test_an_env_token_is_only_ever_paired_with_the_env_url(tmp_path):
    settings = Settings.from_env({"LABEL_STUDIO_URL": "http://ls.internal:8080", "LABEL_STUDIO_API_KEY": "envkey"},
                                 model_dir=tmp_path, push=False)
    eng = Engine(settings, load_encoder=False)
    try:
        project = eng.setup("7", CONFIG, "http://evil.example", "sent-token")
        client = eng.client(project)
        assert client.url == "http://ls.internal:8080" and client._token == "envkey"
        record = eng.store.projects()[0]
        assert record.hostname is None and record.access_token is None
    finally:
        eng.close()
