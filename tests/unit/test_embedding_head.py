"""The head must fit and predict what scikit-learn's LogisticRegression does, without importing it.

Why this matters: the server fits with `fit_logistic` (SciPy L-BFGS-B on scikit-learn's objective)
and predicts through `LinearHead` (NumPy), so scikit-learn (about 75 MiB resident with scipy.stats
and pandas) never loads. If either drifted from scikit-learn, versions would silently change.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from backends.embedding import EmbeddingClassifier, LinearHead, fit_logistic

ROOT = Path(__file__).resolve().parents[2]


def _features(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm float64 rows (like sentence embeddings) with k separable-ish classes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(scale=2.0, size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, np.asarray([f"c{i}" for i in y])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_numpy_head_matches_sklearn(k: int) -> None:
    X, y = _features(400, 384, k, seed=k)
    weights = np.random.default_rng(0).uniform(0.5, 5.0, size=len(y))
    est = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(X, y, sample_weight=weights)
    head = LinearHead.from_estimator(est)
    X_new, _ = _features(1000, 384, k, seed=100 + k)
    X_new[:5] *= 50.0  # extreme scores: saturated probabilities must agree too
    ours, theirs = head.predict_proba(X_new), est.predict_proba(X_new)
    assert ours.dtype == np.float64 and ours.shape == theirs.shape == (1000, k)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(head.decision_function(X_new), est.decision_function(X_new), rtol=0, atol=1e-12)
    assert list(head.classes_) == list(est.classes_)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_fit_logistic_matches_sklearn(k: int) -> None:
    """Same objective, start and L-BFGS-B settings: the same coefficients, to rounding."""
    X, y = _features(300, 384, k, seed=10 + k)
    weights = np.concatenate([np.ones(300 - k), np.full(k, 5.0)])  # label prompts as weighted pseudo-examples
    y[:40] = "c0"  # unbalanced, so the balanced class weights matter
    est = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(X, y, sample_weight=weights)
    ours = fit_logistic(X, y, weights, C=1.0, max_iter=2000)
    ref = LinearHead.from_estimator(est)
    assert list(ours.classes_) == list(ref.classes_) and ours.coef_.shape == ref.coef_.shape
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=0, atol=1e-8)
    X_new, _ = _features(500, 384, k, seed=200 + k)
    np.testing.assert_allclose(ours.predict_proba(X_new), est.predict_proba(X_new), rtol=0, atol=1e-10)


def test_fit_logistic_refuses_one_class() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_logistic(np.zeros((3, 2)), np.asarray(["a", "a", "a"]))


def test_head_rejects_wrong_width() -> None:
    X, y = _features(50, 8, 2, seed=1)
    head = LinearHead.from_estimator(LogisticRegression().fit(X, y))
    with pytest.raises(ValueError, match="expects"):
        head.predict_proba(np.zeros((3, 9)))


class _HashEncoder:
    """A tiny deterministic stand-in for the text encoder: this file tests the head, not MiniLM."""

    encoder_id = "hash-test"
    dim = 16
    loaded = True

    def encode(self, texts: list[str], progress=None) -> np.ndarray:
        seeds = [list(hashlib.sha256(t.encode()).digest()) for t in texts]
        out = np.stack([np.random.default_rng(s).normal(size=self.dim) for s in seeds])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _trained(tmp_path: Path, labels: list[str]) -> tuple[EmbeddingClassifier, np.ndarray]:
    from suggest.schema import Item

    rng = np.random.default_rng(3)
    items = [Item(f"text {i}") for i in range(60)]
    answers = [labels[i] for i in rng.integers(0, len(labels), size=60)]
    model = EmbeddingClassifier(labels, encoder=_HashEncoder()).fit(items, answers)
    return model, model.embed([Item(f"new {i}") for i in range(30)])


@pytest.mark.parametrize("labels", [["neg", "pos"], ["a", "b", "c"]])
def test_saved_head_loads_into_sklearn_and_numpy_alike(tmp_path: Path, labels: list[str]) -> None:
    """The saved format (meta.json + head.npz) is unchanged: a LogisticRegression rebuilt from it agrees."""
    model, X = _trained(tmp_path, labels)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    arrays = np.load(tmp_path / "head.npz", allow_pickle=False)
    est = LogisticRegression()
    est.classes_ = np.asarray(meta["head_classes"])
    est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]
    est.n_features_in_ = est.coef_.shape[1]
    loaded = EmbeddingClassifier.load(tmp_path, encoder=_HashEncoder())
    assert loaded.mode == "trained"
    expected = np.zeros((len(X), len(labels)))
    expected[:, [labels.index(c) for c in est.classes_]] = est.predict_proba(X.astype(np.float64))
    np.testing.assert_allclose(loaded.predict_proba_embedded(X), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict_proba_embedded(X), model.predict_proba_embedded(X))


def test_training_and_serving_never_import_sklearn(tmp_path: Path) -> None:
    """Fitting, loading a version and predicting must not pull scikit-learn into the server process."""
    model, _ = _trained(tmp_path, ["neg", "pos"])
    model.save(tmp_path)
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from pathlib import Path
from backends.embedding import EmbeddingClassifier
import suggest.project, suggest.strategies
class Encoder:
    encoder_id, dim, loaded = "hash-test", 16, True
    def encode(self, texts, progress=None):
        return np.random.default_rng(len(texts)).normal(size=(len(texts), 16)).astype(np.float32)
m = EmbeddingClassifier.load(Path({str(tmp_path)!r}), encoder=Encoder())
m.predict_proba_embedded(np.eye(16, dtype=np.float32))
from suggest.schema import Item
from backends.multilabel import MultiLabelClassifier
EmbeddingClassifier(["a", "b", "c"], encoder=Encoder()).fit([Item(str(i)) for i in range(9)], list("abcabcabc"))
MultiLabelClassifier(["a", "b"], encoder=Encoder()).fit([Item(str(i)) for i in range(8)], [("a",), ("a", "b")] * 4)
bad = sorted(n for n in sys.modules if n == "sklearn" or n.startswith("sklearn."))
assert not bad, bad[:5]
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("labels", [["neg", "pos"], ["a", "b", "c"]])
def test_a_retrain_starts_from_the_replaced_head_and_ends_where_a_cold_fit_ends(
        monkeypatch: pytest.MonkeyPatch, labels: list[str]) -> None:
    """Issue 20: at 10,000 labels each retrain's cold fit took 1-2 s of the CPU the annotators' saves need. The
    next version starts from the serving head (`warm_start_from`), so a few more labels cost a few iterations;
    the loss is convex, so the result is the cold fit's to the solver's tolerance."""
    import scipy.optimize

    from suggest.schema import Item

    iterations: list[int] = []
    minimize = scipy.optimize.minimize

    def counting(*args, **kwargs):
        result = minimize(*args, **kwargs)
        iterations.append(int(result.nit))
        return result

    monkeypatch.setattr(scipy.optimize, "minimize", counting)
    items = [Item(f"text {i}") for i in range(400)]
    X = _HashEncoder().encode([it.text for it in items])
    answers = [labels[i] for i in X[:, :len(labels)].argmax(axis=1)]  # learnable, as real labels are
    served = EmbeddingClassifier(labels, encoder=_HashEncoder()).fit(items[:390], answers[:390])
    cold = EmbeddingClassifier(labels, encoder=_HashEncoder()).fit(items, answers)
    warm = EmbeddingClassifier(labels, encoder=_HashEncoder())
    warm.warm_start_from(served)
    warm.fit(items, answers)
    _, cold_iterations, warm_iterations = iterations
    assert warm_iterations < cold_iterations / 2, iterations
    np.testing.assert_allclose(warm.predict_proba_embedded(X), cold.predict_proba_embedded(X), atol=5e-3)
    assert not hasattr(EmbeddingClassifier(labels, encoder=_HashEncoder()), "warm_head_")
