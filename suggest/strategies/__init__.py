"""Query strategies: which unlabeled tasks annotators should see next, and in what order.

Label Studio shows tasks in ascending `score`, so after each retrain the engine calls
`rank_pool(proba, X)` once over the whole unlabeled pool: it picks a batch that is uncertain *and*
typical (dense neighbourhoods, no near-duplicates), gives that batch the lowest scores in batch
order, and ranks every other task by uncertainty after it.

Everything is NumPy / SciPy / scikit-learn, vectorised over tasks and chunked over the pool so memory stays
bounded: only `chunk_size` rows of probabilities, at most `max_candidates` centred candidate embeddings
and a `reference` sample are ever held besides the caller's `X` (n, d) and one float64 certainty per task.

Vocabulary: `certainty` is in [0, 1], LOWER = less certain = more worth labelling. Strategies
follow small-text / scikit-activeml: `query(proba=..., X=..., batch_size=..., labeled_mask=...)`
returns pool indices, best first. Pick one by name with `make_strategy` (see `STRATEGIES`).

Two settings, one meaning each: the certainty *measure* (margin, least_confidence, entropy:
`SUGGEST_UNCERTAINTY`) is how a task's certainty is measured, so it sets the `score` of every task
outside the batch and what the uncertainty-weighing strategies (dense, diverse) weigh; the
*strategy* (`SUGGEST_STRATEGY`) is how the batch at the top of the queue is chosen. The strategies
named "margin", "least_confidence" and "entropy" are uncertainty sampling that pick the batch by
that measure, whatever the measure of the scores.

The certainty measures themselves live in backends/uncertainty.py, next to the model families
whose guesses carry them; `certainty` and CERTAINTY_METHODS are re-exported here.

Modules, one seam each:
  base         QueryStrategy, CertaintyStrategy and the input checks every strategy shares
  uncertainty  RandomSampling, UncertaintySampling
  clustering   k-means and greedy k-means++ spreading (shared by diversity and cold start)
  diversity    DiverseUncertainty, DenseUncertainty and their density helpers
  coldstart    ColdStart (before the first model)
  plugins      ModalQuery: modAL-style query functions by dotted path
  registry     STRATEGIES, make_strategy, strategy_for ("auto")
  ranking      rank_pool, rank_by_certainty: the score contract Label Studio sorts on
"""

from __future__ import annotations

from backends.uncertainty import CERTAINTY_METHODS, certainty
from suggest.strategies.base import CertaintyStrategy, QueryStrategy
from suggest.strategies.coldstart import ColdStart
from suggest.strategies.diversity import DIVERSITY_METHODS, DenseUncertainty, DiverseUncertainty
from suggest.strategies.plugins import ModalQuery
from suggest.strategies.ranking import BATCH_BAND, DEFAULT_CHUNK_SIZE, rank_by_certainty, rank_pool
from suggest.strategies.registry import AUTO, DEFAULT_STRATEGY, STRATEGIES, make_strategy, strategy_for
from suggest.strategies.uncertainty import RandomSampling, UncertaintySampling

__all__ = [
    "AUTO",
    "BATCH_BAND",
    "CERTAINTY_METHODS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_STRATEGY",
    "DIVERSITY_METHODS",
    "STRATEGIES",
    "CertaintyStrategy",
    "ColdStart",
    "DenseUncertainty",
    "DiverseUncertainty",
    "ModalQuery",
    "QueryStrategy",
    "RandomSampling",
    "UncertaintySampling",
    "certainty",
    "make_strategy",
    "rank_by_certainty",
    "rank_pool",
    "strategy_for",
]
