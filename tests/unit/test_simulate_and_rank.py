"""`suggest simulate` and `suggest rank`: the engine's own model and strategies, offline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from suggest.cli import app
from suggest.rank import rank_items
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
    assert 0.6 < result["full_pool_accuracy"]["mean"] <= 1.0
    assert result["strategies"]["diverse"]["mean"][-1] > 0.55


def test_rank_cold_start_then_trained(rt_sample, tmp_path):
    pool = [t for t, _ in rt_sample[:80]]
    cold = rank_items(pool, [], batch=5, cache=Store(tmp_path))
    assert [r["rank"] for r in cold] == [1, 2, 3, 4, 5]
    assert len({r["index"] for r in cold}) == 5 and "suggestion" not in cold[0]
    labeled = list(rt_sample[100:140])
    warm = rank_items(pool, labeled, batch=5, strategy="margin", cache=Store(tmp_path))
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
