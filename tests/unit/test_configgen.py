"""`suggest config` (issue 18): every generated config passes label-studio-sdk's validation and is accepted
by `/setup`; `--from-data` guesses the object and field; bad input is one clear line."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from label_studio_sdk.label_interface import LabelInterface
from typer.testing import CliRunner

from suggest.cli import app
from suggest.config import Settings
from suggest.configgen import choices_config, guess_from_data, labels_config
from suggest.labelstudio import parse_controls
from suggest.schema import BadInput
from suggest.server import create_app

GENERATED = [
    (["--choices", "positive,negative"], ("classification", "text", "text")),
    (["--choices", "a,b,c", "--multiple"], ("multilabel", "text", "text")),
    (["--choices", "cat,dog", "--object", "image"], ("classification", "image", "image")),
    (["--choices", "cat,dog,bird", "--object", "image", "--multiple"], ("multilabel", "image", "image")),
    (["--labels", "PER,ORG,LOC"], ("spans", "text", "text")),
    (["--labels", "Firm & Co,\"Quoted\",<b>"], ("spans", "text", "text")),  # XML-special label names
    (["--choices", "yes,no", "--field", "review", "--name", "verdict"], ("classification", "text", "review")),
]


def invoke(args):
    return CliRunner().invoke(app, ["config", *args])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings.from_env({}, model_dir=tmp_path_factory.mktemp("models"))
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(("args", "expected"), GENERATED)
def test_every_generated_config_validates_and_is_served(client, args, expected):
    out = invoke(args)
    assert out.exit_code == 0, out.output
    xml = out.stdout
    LabelInterface(xml).validate()  # label-studio-sdk's own checks raise on a bad config
    (schema,) = parse_controls(xml)
    assert (schema.task_kind, schema.object_type, schema.value_key) == expected
    names = next(a for a in args if "," in a).split(",")
    assert list(schema.labels) == names
    resp = client.post("/setup", json={"project": f"{len(xml)}.1795257747", "schema": xml, "hostname": None,
                                       "access_token": None, "extra_params": None})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model_version"]


def test_from_data_guesses_object_and_field(tmp_path, client):
    csv_file = tmp_path / "reviews.csv"
    csv_file.write_text("id,title,review\n1,Short,A long and rather winding review of the film\n"
                        "2,Tiny,Another long review that says a lot about the plot\n")
    assert guess_from_data(csv_file) == ("text", "review")
    jsonl = tmp_path / "photos.jsonl"
    jsonl.write_text("\n".join(json.dumps({"caption": "a long caption about a cat on a mat in the sun",
                                           "img": f"https://example.org/p/{i}.jpg"}) for i in range(5)) + "\n")
    assert guess_from_data(jsonl) == ("image", "img")
    assert guess_from_data(jsonl, "caption") == ("text", "caption")
    out = invoke(["--choices", "cat,dog", "--from-data", str(jsonl), "--out", str(tmp_path / "c.xml")])
    assert out.exit_code == 0, out.output
    xml = (tmp_path / "c.xml").read_text()
    assert '<Image name="image" value="$img"/>' in xml
    resp = client.post("/setup", json={"project": "77.1795257747", "schema": xml})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(("args", "message"), [
    ([], "give either --choices"),
    (["--choices", "a,b", "--labels", "X"], "give either --choices"),
    (["--choices", "only"], "at least two choices"),
    (["--choices", "a,a,b"], "a named more than once"),
    (["--labels", "PER", "--object", "image"], "suggest serves no regions on images"),
    (["--labels", "PER", "--multiple"], "--multiple goes with --choices"),
    (["--choices", "a,b", "--object", "audio"], "--object must be one of text, image"),
    (["--choices", "a,b", "--field", "bad field"], "plain name"),
    (["--choices", "a,b", "--from-data", "/nonexistent.csv"], "does not exist"),
])
def test_bad_input_is_one_clear_line(args, message):
    out = invoke(args)
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


def test_the_functions_check_what_they_write(tmp_path):
    assert 'choice="multiple"' in choices_config(["x", "y"], multiple=True)
    with pytest.raises(BadInput):
        labels_config([" ", ""])
    data = tmp_path / "d.csv"
    data.write_text("text\nhello\n")
    with pytest.raises(BadInput, match="no field 'nope'"):
        guess_from_data(data, "nope")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BadInput, match="holds no rows"):
        guess_from_data(tmp_path / "empty.csv")
