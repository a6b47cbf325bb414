"""Bring your own model (issue 15): a user's encoder and a user's pre-trained text classifier.

Tiny BERT models with random weights are written into temporary folders (tests/tiny_models.py) and
loaded by the real loading code (transformers, `pipeline()`), never from a hub. What is held: the
encoder's width and id come from the model, its vectors never share cache keys with another model's,
a bad folder is one line naming the setting; the classifier's labels map by name or `model_label`,
unmappable ones are refused (a SchemaError, so a 422 at /setup), it pre-annotates before any label,
its prior is measured against the head alone, and the family passes the Backend contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends import encoders, pipeline
from backends.checks import MemoryCache, check_backend
from backends.encoders import configure_text_encoder, encoder_for_saved, shared_text_encoder
from backends.pipeline import PipelineClassifier, map_labels, parse_classifiers
from backends.registry import BUILTINS, Context, Registry
from backends.schema import Item, Schema, SchemaError
from backends.user_encoder import UserTextEncoder, check_model_folder, model_identity
from suggest.config import Settings, SettingsError
from suggest.labelstudio import parse_controls
from tests.tiny_models import tiny_classifier, tiny_encoder

LEAN = {"good": "POSITIVE", "great": "POSITIVE", "love": "POSITIVE", "best": "POSITIVE",
        "bad": "NEGATIVE", "awful": "NEGATIVE", "dull": "NEGATIVE", "worst": "NEGATIVE"}
TEXTS = ["a good movie", "the best film", "great actor and a great story", "i love this plot",
         "a bad movie", "the worst film", "awful actor and a dull story", "this plot is weak and bad",
         "a fine film", "not very fun", "the story was superb", "boring and weak"]
TRUTH = ["fresh"] * 4 + ["rotten"] * 4 + ["fresh", "rotten", "fresh", "rotten"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"encoder": tiny_encoder(root / "tiny-encoder"),
            "encoder2": tiny_encoder(root / "other" / "tiny-encoder", seed=1),
            "sentiment": tiny_classifier(root / "sentiment", lean=LEAN)}


@pytest.fixture
def user_encoder(models):
    configure_text_encoder(str(models["encoder"]))
    yield shared_text_encoder()
    configure_text_encoder(None)


@pytest.fixture
def classifier(models, user_encoder):
    pipeline.configure_classifiers(str(models["sentiment"]))
    yield models["sentiment"]
    pipeline.configure_classifiers(None)


# the encoder -------------------------------------------------------------------------------------------------


def test_user_encoder_width_and_id_come_from_the_model(models, user_encoder) -> None:
    assert isinstance(user_encoder, UserTextEncoder)
    assert user_encoder.dim == 32 and user_encoder.pooling == "mean"
    X = user_encoder.encode(TEXTS[:3])
    assert X.shape == (3, 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # same folder name, other weights: another id, so cached vectors never mix
    other = UserTextEncoder(models["encoder2"])
    assert user_encoder.encoder_id.startswith("tiny-encoder-") and other.encoder_id.startswith("tiny-encoder-")
    assert user_encoder.encoder_id != other.encoder_id
    assert user_encoder.encoder_id == model_identity(models["encoder"])  # stable: names and sizes, not paths
    assert not np.allclose(other.encode(TEXTS[:3]), X)


def test_packaged_default_keeps_its_id_and_old_versions_keep_their_encoder(user_encoder) -> None:
    configure_text_encoder(None)
    assert shared_text_encoder().encoder_id == "all-MiniLM-L6-v2@L4+last"
    configure_text_encoder(user_encoder.model_path)
    assert shared_text_encoder() is user_encoder
    # a head trained on MiniLM before the setting was made keeps MiniLM (its coefficients live in that space)
    saved = encoder_for_saved("all-MiniLM-L6-v2@L4+last", user_encoder)
    assert saved.encoder_id == "all-MiniLM-L6-v2@L4+last" and saved.dim == 384
    with pytest.raises(ValueError, match="not loaded"):
        encoder_for_saved("some-other-model-1234abcd", user_encoder)


def test_cache_is_keyed_by_the_user_encoder(user_encoder) -> None:
    """The default family embeds with the configured encoder and caches under its id (and no other)."""
    cache = MemoryCache()
    model = Registry(BUILTINS).make(Schema("s", "text", "text", ("fresh", "rotten")), Context(cache=cache))
    assert model.encoder is user_encoder
    X = model.embed([Item(t) for t in TEXTS[:4]])
    assert X.shape == (4, 32)
    assert {key[0] for key in cache.vectors} == {user_encoder.encoder_id}


def test_a_bad_encoder_folder_is_one_line_naming_the_setting(tmp_path, models) -> None:
    with pytest.raises(SettingsError, match=r"^SUGGEST_TEXT_ENCODER: .* is not a model folder"):
        Settings.from_env({"SUGGEST_TEXT_ENCODER": str(tmp_path / "missing")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(SettingsError, match="SUGGEST_TEXT_ENCODER: .* has no config.json"):
        Settings.from_env({"SUGGEST_TEXT_ENCODER": str(tmp_path / "empty")})
    with pytest.raises(SettingsError, match="not in the local Hugging Face cache"):
        Settings.from_env({"SUGGEST_TEXT_ENCODER": "nobody/no-such-model"})
    with pytest.raises(SettingsError, match="SUGGEST_TEXT_CLASSIFIER: .* names no id2label"):
        Settings.from_env({"SUGGEST_TEXT_CLASSIFIER": str(models["encoder"])})
    ok = Settings.from_env({"SUGGEST_TEXT_ENCODER": str(models["encoder"]),
                            "SUGGEST_TEXT_CLASSIFIER": f"sst={models['sentiment']}"})
    assert ok.text_encoder == str(models["encoder"])
    assert check_model_folder(str(models["sentiment"]), classifier=True) == models["sentiment"].resolve()


def test_spans_on_a_shallow_user_encoder(user_encoder) -> None:
    """The tagger asks for layer 4; a 2-layer model gives its last layer instead of an IndexError."""
    pieces = user_encoder.encode_tokens(["john works at google"], layer=4)
    offsets, vectors = pieces[0]
    assert len(offsets) == 4 and vectors.shape == (4, 32)


# the classifier: label mapping --------------------------------------------------------------------------------


def test_labels_map_by_name_case_insensitively_or_by_override() -> None:
    model = ("NEGATIVE", "POSITIVE")
    assert map_labels(("positive", "Negative"), model) == {"positive": ("POSITIVE",), "Negative": ("NEGATIVE",)}
    assert map_labels(("fresh", "rotten"), model, {"fresh": ("positive",), "rotten": ("NEGATIVE",)}) == \
        {"fresh": ("POSITIVE",), "rotten": ("NEGATIVE",)}
    assert map_labels(("very_bad", "fine", "other"), ("very bad", "fine", "x"), {"other": ("none",)}) == \
        {"very_bad": ("very bad",), "fine": ("fine",), "other": ()}
    with pytest.raises(SchemaError, match=r"labels \['fresh', 'rotten'\] match none of the classifier's labels "
                                          r"\['NEGATIVE', 'POSITIVE'\].*model_label"):
        map_labels(("fresh", "rotten"), model, control="sentiment")
    with pytest.raises(SchemaError, match=r"names \['GOOD'\], which the classifier does not have"):
        map_labels(("fresh", "rotten"), model, {"fresh": ("GOOD",), "rotten": ("NEGATIVE",)})
    with pytest.raises(SchemaError, match="mapped to more than one choice"):
        map_labels(("fresh", "rotten"), model, {"fresh": ("POSITIVE",), "rotten": ("POSITIVE",)})


def test_config_attributes_reach_the_family(classifier) -> None:
    """<Choices model=...> and <Choice model_label=...> are read from the config; unmappable configs are refused."""
    config = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
              '<Choice value="fresh" model_label="POSITIVE"/><Choice value="rotten" model_label="negative"/>'
              '</Choices></View>')
    (schema,) = parse_controls(config)
    registry = Registry(BUILTINS)
    assert registry.family_for(schema).name == "pipeline"
    (plain,) = parse_controls(config.replace('toName="text">', 'toName="text" model="none">'))
    assert registry.family_for(plain).name == "embedding"
    (unmapped,) = parse_controls(config.replace(' model_label="POSITIVE"', ""))
    with pytest.raises(SchemaError, match=r"labels \['fresh'\] match none"):
        registry.family_for(unmapped)
    (reference,) = parse_controls(config.replace("model_label=", "predicted_values="))  # label-studio-ml's name
    assert reference.model_labels == schema.model_labels == {"fresh": ("POSITIVE",), "rotten": ("negative",)}
    (unknown,) = parse_controls(config.replace('toName="text">', 'toName="text" model="topics">'))
    with pytest.raises(SchemaError, match="no model of that name"):
        registry.family_for(unknown)
    assert parse_classifiers("a=/m/1, b=/m/2") == {"a": "/m/1", "b": "/m/2"}
    assert parse_classifiers("/m/1") == {"": "/m/1"}


# the classifier as a family --------------------------------------------------------------------------------


SCHEMA = Schema("sentiment", "text", "text", ("fresh", "rotten"),
                model_labels={"fresh": ("POSITIVE",), "rotten": ("NEGATIVE",)})


def test_pipeline_family_keeps_the_backend_contract(classifier) -> None:
    family = Registry(BUILTINS).family_for(SCHEMA)
    assert family.name == "pipeline"
    check_backend(family, SCHEMA, [Item(t) for t in TEXTS], TRUTH)


def test_it_pre_annotates_before_any_label(classifier) -> None:
    model = Registry(BUILTINS).make(SCHEMA, Context(cache=MemoryCache()))
    assert model.mode == "bootstrap"
    guesses = model.guess([Item(t) for t in TEXTS[:8]])
    assert [g.value for g in guesses] == TRUTH[:8]  # the classifier's own answers, through the label map
    assert all(g.probability > 0.9 for g in guesses)


def test_the_prior_is_measured_and_kept_only_where_it_helps(classifier) -> None:
    """Labels that agree with the classifier keep its prior; labels that contradict it drop it (weight 0)."""
    items = [Item(t) for t in TEXTS[:8]] * 3
    items = [Item(f"{it.text} {'the ' * (i // 8)}".strip()) for i, it in enumerate(items)]  # 24 distinct texts
    agree = TRUTH[:8] * 3
    model = PipelineClassifier(["fresh", "rotten"], model=str(classifier), label_map=SCHEMA.model_labels,
                               cache=MemoryCache()).fit(items, agree)
    assert model.mode == "trained" and model.weight_ > 0, model.measured_
    assert set(model.measured_) == {"0.0", "0.5", "1.0"}
    few = PipelineClassifier(["fresh", "rotten"], model=str(classifier), label_map=SCHEMA.model_labels,
                             cache=MemoryCache()).fit(items[:12], ["rotten" if y == "fresh" else "fresh"
                                                                  for y in agree[:12]])
    assert few.weight_ == 1.0 and few.measured_ == {}  # under 20 labels: not measured, the prior stays
    flipped = ["rotten" if y == "fresh" else "fresh" for y in agree]
    contrary = PipelineClassifier(["fresh", "rotten"], model=str(classifier), label_map=SCHEMA.model_labels,
                                  cache=MemoryCache()).fit(items, flipped)
    assert contrary.weight_ == 0.0, contrary.measured_
    # with weight 0 the trained model is exactly the head alone
    np.testing.assert_allclose(contrary.predict_proba(items), contrary.head.predict_proba(items), atol=1e-12)


def test_a_changed_classifier_folder_does_not_load_an_old_version(tmp_path, classifier) -> None:
    model = PipelineClassifier(["fresh", "rotten"], model=str(classifier), label_map=SCHEMA.model_labels)
    model.fit([Item(t) for t in TEXTS], TRUTH)
    (tmp_path / "v").mkdir()
    model.save(tmp_path / "v")
    assert PipelineClassifier.load(tmp_path / "v").weight_ == model.weight_
    pipeline._shared_models.clear()
    (Path(classifier) / "extra.txt").write_text("a new file changes the identity")
    try:
        with pytest.raises(ValueError, match="changed since this version was trained"):
            PipelineClassifier.load(tmp_path / "v")
    finally:
        (Path(classifier) / "extra.txt").unlink()
        pipeline._shared_models.clear()


def test_encoders_module_default_is_restored() -> None:
    """The fixtures leave the process on the packaged encoder (other tests rely on it)."""
    assert encoders.configured_text_encoder() is None
    assert pipeline._classifiers == {}


# token classification: a user's NER model bootstraps <Labels> -------------------------------------------------


NER_LEAN = {"john": "B-PER", "mary": "B-PER", "london": "B-LOC", "paris": "B-LOC"}
SPANS = Schema("ner", "text", "text", ("Person", "Location", "Organization"), control="labels",
               model_labels={"Person": ("PER",), "Location": ("loc",), "Organization": ("none",)})


@pytest.fixture
def ner(models, user_encoder):
    from tests.tiny_models import tiny_token_classifier

    folder = tiny_token_classifier(models["encoder"].parent / "ner", lean=NER_LEAN)
    pipeline.configure_classifiers(f"sst={models['sentiment']},ner={folder}")
    yield folder
    pipeline.configure_classifiers(None)


def test_a_token_classifier_pre_annotates_spans_through_the_label_map(ner) -> None:
    from dataclasses import replace

    from backends.pipeline_spans import PipelineTagger

    schema = replace(SPANS, model="ner")
    registry = Registry(BUILTINS)
    assert registry.family_for(schema).name == "pipeline-spans"
    model = registry.make(schema, Context(cache=MemoryCache()))
    assert isinstance(model, PipelineTagger) and model.mode == "bootstrap"
    (guess,) = model.guess([Item("john works in london")])
    assert [(s.start, s.end, s.label, s.text) for s in guess.value] == [(0, 4, "Person", "john"),
                                                                         (14, 20, "Location", "london")]
    # a label the model has no type for must be said explicitly: refused otherwise
    with pytest.raises(SchemaError, match=r"labels \['Organization'\] match none of the classifier's labels "
                                          r"\['PER', 'LOC'\]"):
        registry.family_for(replace(schema, model_labels={"Person": ("PER",), "Location": ("LOC",)}))
    # a control naming a model of the other task is refused, and a text classifier never serves spans
    with pytest.raises(SchemaError, match="is a text-classification model; this control needs token-classification"):
        registry.family_for(replace(schema, model="sst"))
    assert registry.family_for(replace(schema, model=None)).name == "spans"


def test_pipeline_spans_family_keeps_the_backend_contract(ner) -> None:
    import json as _json
    from dataclasses import replace

    from backends.schema import Span

    root = Path(__file__).resolve().parents[1]
    items, answers = [], []
    for line in (root / "data/ner/train.jsonl").read_text(encoding="utf-8").splitlines()[:12]:
        row = _json.loads(line)
        items.append(Item(row["text"]))
        answers.append(tuple(Span(s, e, lb, row["text"][s:e]) for s, e, lb in row["spans"]))
    schema = replace(SPANS, model="ner")
    check_backend(Registry(BUILTINS).family_for(schema), schema, items, answers)


def test_through_the_api_unmappable_is_a_422_and_mapped_labels_pre_annotate(tmp_path, models) -> None:
    """SUGGEST_TEXT_ENCODER and SUGGEST_TEXT_CLASSIFIER set: /setup refuses a config whose labels do not map
    (nothing stored), and a mapped one gets the classifier's answers from /predict before any label."""
    from fastapi.testclient import TestClient

    from suggest.server import create_app
    from tests.api.test_protocol import predict, setup
    from tests.conftest import task

    settings = Settings.from_env({}, model_dir=tmp_path / "m", text_encoder=str(models["encoder"]),
                                 text_classifier=str(models["sentiment"]))
    plain = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
             '<Choice value="fresh"/><Choice value="rotten"/></Choices></View>')
    mapped = plain.replace('value="fresh"', 'value="fresh" model_label="POSITIVE"').replace(
        'value="rotten"', 'value="rotten" model_label="NEGATIVE"')
    try:
        with TestClient(create_app(settings)) as client:
            refused = setup(client, plain)
            assert refused.status_code == 422
            assert "labels ['fresh', 'rotten'] match none of the classifier's labels" in refused.text
            assert client.get("/metrics").json()["projects"] == {}
            assert setup(client, mapped).status_code == 200
            results = predict(client, [task(1, "a good movie"), task(2, "an awful film")], mapped).json()["results"]
            assert [r["result"][0]["value"]["choices"] for r in results] == [["fresh"], ["rotten"]]
    finally:
        configure_text_encoder(None)
        pipeline.configure_classifiers(None)


# the image encoder ------------------------------------------------------------------------------------------


def test_a_user_image_encoder_serves_image_controls(tmp_path) -> None:
    from backends.images import ImageClassifier, ImageEncoder, configure_image_encoder, saved_image_encoder
    from backends.user_image_encoder import UserImageEncoder
    from tests.samples import png
    from tests.tiny_models import tiny_vision

    folder = tiny_vision(tmp_path / "tiny-vit")
    schema = Schema("kind", "image", "image", ("warm", "cool"), object_type="image")
    configure_image_encoder(str(folder))
    try:
        family = Registry(BUILTINS).family_for(schema)
        model = family.make(schema, Context(cache=MemoryCache()))
        assert isinstance(model.encoder, UserImageEncoder)
        assert model.encoder.dim == 32 and model.encoder.size == 32
        assert model.encoder.encoder_id.startswith("tiny-vit-") and model.encoder.encoder_id.endswith("-32px")
        items = [Item(f"img{i}.png", i, png(i % 2 == 0, i)) for i in range(8)]
        X = model.embed(items)
        assert X.shape == (8, 32)
        np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
        check_backend(family, schema, items, ["warm" if i % 2 == 0 else "cool" for i in range(8)])
        # a version trained on the packaged encoder keeps it (its head lives in 1280-d EfficientNet space)
        old = saved_image_encoder(tmp_path, {"encoder_id": "efficientnet-lite0-160px", "image_size": 160})
        assert type(old) is ImageEncoder and old.encoder_id == "efficientnet-lite0-160px"
        assert isinstance(ImageClassifier(["warm", "cool"]).encoder, UserImageEncoder)
    finally:
        configure_image_encoder(None)
    with pytest.raises(SettingsError, match="SUGGEST_IMAGE_ENCODER: .* has no preprocessor_config.json"):
        Settings.from_env({"SUGGEST_IMAGE_ENCODER": _no_preprocessor(tmp_path)})


def _no_preprocessor(tmp_path: Path) -> str:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)
