"""The evaluation stage: ranking metrics on held-out data, against baselines.

:class:`Evaluator` scores models by every metric of :mod:`~rectune.evaluation.metrics` in
one top-K pass (the kernel is :mod:`~rectune.evaluation.ranking`); tuning trials and the
evaluation stage (:func:`run_evaluation`) both use it. Intervals come from
:mod:`~rectune.evaluation.statistics`, baselines from :mod:`~rectune.evaluation.baselines`."""

# Lazy (rectune._faces): the recommender imports the ranking kernel, and the
# evaluation stage imports the recommender.

from __future__ import annotations

from typing import TYPE_CHECKING

from rectune._faces import lazy_face

#: Submodule -> the public names it defines, every one re-exported here.
_EXPORTS = {
    "baselines": "popularity_factors random_scorer",
    "evaluator": "Evaluator evaluate",
    "metrics": (
        "METRICS USER_METRICS RankingEvaluation average_precision_at_k catalog_coverage "
        "hit_rate_at_k ndcg_at_k precision_at_k recall_at_k reciprocal_rank_at_k user_metrics"
    ),
    "ranking": (
        "Scorer check_list_length chunk_width factor_scorer factors_of rank_items rows_of "
        "sample_users top_k top_k_chunked users_per_block"
    ),
    "report": (
        "evaluation_tables render_evaluation_html render_evaluation_markdown "
        "write_evaluation_reports"
    ),
    "stage": (
        "BASELINES DEFAULT_KS DEFAULTS_BASELINE MODEL EvaluationConfig EvaluationResult "
        "check_fingerprint load_recommender run_evaluation score_systems summarise"
    ),
    "statistics": (
        "Interval PairedComparison bootstrap_means mean_intervals paired_comparison "
        "percentile_interval"
    ),
}
_EXPORTS_BY_MODULE = {module: tuple(names.split()) for module, names in _EXPORTS.items()}

__all__ = sorted((n for names in _EXPORTS_BY_MODULE.values() for n in names), key=str.lower)

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS_BY_MODULE)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and editors
    from rectune.evaluation.baselines import *  # noqa: F403
    from rectune.evaluation.evaluator import *  # noqa: F403
    from rectune.evaluation.metrics import *  # noqa: F403
    from rectune.evaluation.ranking import *  # noqa: F403
    from rectune.evaluation.report import *  # noqa: F403
    from rectune.evaluation.stage import *  # noqa: F403
    from rectune.evaluation.statistics import *  # noqa: F403
