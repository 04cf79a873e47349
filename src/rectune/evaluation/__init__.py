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

#: Where each public name lives, by submodule.
_EXPORTS = {
    "baselines": (
        "popularity_factors",
        "random_scorer",
    ),
    "evaluator": (
        "Evaluator",
        "evaluate",
    ),
    "metrics": (
        "METRICS",
        "USER_METRICS",
        "RankingEvaluation",
        "average_precision_at_k",
        "catalog_coverage",
        "hit_rate_at_k",
        "ndcg_at_k",
        "precision_at_k",
        "recall_at_k",
        "reciprocal_rank_at_k",
        "user_metrics",
    ),
    "ranking": (
        "Scorer",
        "check_list_length",
        "chunk_width",
        "factor_scorer",
        "factors_of",
        "rank_items",
        "rows_of",
        "sample_users",
        "top_k",
        "top_k_chunked",
        "users_per_block",
    ),
    "report": (
        "evaluation_tables",
        "render_evaluation_html",
        "render_evaluation_markdown",
        "write_evaluation_reports",
    ),
    "stage": (
        "BASELINES",
        "DEFAULT_KS",
        "DEFAULTS_BASELINE",
        "MODEL",
        "EvaluationConfig",
        "EvaluationResult",
        "check_fingerprint",
        "load_recommender",
        "parse_ks",
        "run_evaluation",
        "score_systems",
        "summarise",
    ),
    "statistics": (
        "Interval",
        "PairedComparison",
        "bootstrap_means",
        "mean_intervals",
        "paired_comparison",
        "percentile_interval",
    ),
}

__all__ = [
    "BASELINES",
    "DEFAULTS_BASELINE",
    "DEFAULT_KS",
    "METRICS",
    "MODEL",
    "USER_METRICS",
    "EvaluationConfig",
    "EvaluationResult",
    "Evaluator",
    "Interval",
    "PairedComparison",
    "RankingEvaluation",
    "Scorer",
    "average_precision_at_k",
    "bootstrap_means",
    "catalog_coverage",
    "check_fingerprint",
    "check_list_length",
    "chunk_width",
    "evaluate",
    "evaluation_tables",
    "factor_scorer",
    "factors_of",
    "hit_rate_at_k",
    "load_recommender",
    "mean_intervals",
    "ndcg_at_k",
    "paired_comparison",
    "parse_ks",
    "percentile_interval",
    "popularity_factors",
    "precision_at_k",
    "random_scorer",
    "rank_items",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "render_evaluation_html",
    "render_evaluation_markdown",
    "rows_of",
    "run_evaluation",
    "sample_users",
    "score_systems",
    "summarise",
    "top_k",
    "top_k_chunked",
    "user_metrics",
    "users_per_block",
    "write_evaluation_reports",
]

__getattr__, __dir__ = lazy_face(__name__, _EXPORTS)

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and editors
    from rectune.evaluation.baselines import popularity_factors, random_scorer
    from rectune.evaluation.evaluator import Evaluator, evaluate
    from rectune.evaluation.metrics import (
        METRICS,
        USER_METRICS,
        RankingEvaluation,
        average_precision_at_k,
        catalog_coverage,
        hit_rate_at_k,
        ndcg_at_k,
        precision_at_k,
        recall_at_k,
        reciprocal_rank_at_k,
        user_metrics,
    )
    from rectune.evaluation.ranking import (
        Scorer,
        check_list_length,
        chunk_width,
        factor_scorer,
        factors_of,
        rank_items,
        rows_of,
        sample_users,
        top_k,
        top_k_chunked,
        users_per_block,
    )
    from rectune.evaluation.report import (
        evaluation_tables,
        render_evaluation_html,
        render_evaluation_markdown,
        write_evaluation_reports,
    )
    from rectune.evaluation.stage import (
        BASELINES,
        DEFAULT_KS,
        DEFAULTS_BASELINE,
        MODEL,
        EvaluationConfig,
        EvaluationResult,
        check_fingerprint,
        load_recommender,
        parse_ks,
        run_evaluation,
        score_systems,
        summarise,
    )
    from rectune.evaluation.statistics import (
        Interval,
        PairedComparison,
        bootstrap_means,
        mean_intervals,
        paired_comparison,
        percentile_interval,
    )
