"""The NumPy head must predict what scikit-learn's LogisticRegression predicts, and serve without it.

Why this matters: the server predicts through `LinearHead` so that scikit-learn (about 75 MiB
resident with scipy.stats and pandas) is imported only when a head is trained. If the NumPy path
drifted from scikit-learn's arithmetic, saved versions would silently score differently.
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

from backends.embedding import EmbeddingClassifier, LinearHead

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


def test_serving_a_saved_version_never_imports_sklearn(tmp_path: Path) -> None:
    """Loading a version and predicting must not pull scikit-learn into the server process."""
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
m = EmbeddingClassifier.load(Path({str(tmp_path)!r}), encoder=Encoder())
m.predict_proba_embedded(np.eye(16, dtype=np.float32))
bad = sorted(n for n in sys.modules if n == "sklearn" or n.startswith("sklearn."))
assert not bad, bad[:5]
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
