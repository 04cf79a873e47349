"""The study report's content: sentences, labels, log axes, size and plotly.js once,
on in-memory studies (no tuning run)."""

import html
import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from report_studies import fifty_trial_study, hand_study, summary_of

from rectune._html import PLOTLY_BUNDLE, bundle_traces, figure_json
from rectune.tuning import render_report, study_figures, write_study_reports
from rectune.tuning._figures import log_axis
from rectune.tuning._report_text import importance_sentences

PLOTLY_HEADER = "* plotly.js (basic - minified) v4.1.1"
AGREE = {"fanova": {"regularization": 0.7, "factors": 0.2}, "ped_anova": {"regularization": 0.6}}
DISAGREE = {"fanova": {"regularization": 0.7, "factors": 0.3}, "ped_anova": {"factors": 0.6}}


def text_of(page: str) -> str:
    """The page's words: tags dropped, whitespace squeezed, entities undone."""
    body = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def report(study, importance=AGREE) -> str:
    figures, skipped = study_figures(study, importance)
    return render_report(study, summary_of(study), figures, skipped, importance)


@pytest.fixture(scope="module")
def fifty():
    study = fifty_trial_study()
    figures, skipped = study_figures(study, DISAGREE)
    page = render_report(study, summary_of(study), figures, skipped, DISAGREE)
    return study, figures, skipped, page


def test_the_summary_names_counts_best_runner_up_defaults_and_the_split():
    words = text_of(report(hand_study()))
    assert (
        "Study hand ran 7 trials: 5 complete (1 of them recorded from another trial's fit, "
        "1 reused an earlier trial's values), 1 pruned, 1 failed." in words
    )
    assert (
        "The best trial, 1, reached precision@10 = 0.3000 with factors=32, "
        "regularization=10, weighting=bm25." in words
    )
    # Trial 5 reused the best's values and is not its runner-up; trial 2 is.
    assert (
        "The runner-up, trial 2, reached 0.2500, 0.0500 (16.7%) below the best, with "
        "factors=64 (best: 32)." in words
    )
    assert (
        "Trial 0 ran the model's defaults (factors=100, regularization=0.01, "
        "weighting=stored): precision@10 = 0.1000, 0.2000 (66.7%) below the best." in words
    )
    assert "measured on the validation split carved out of train" in words
    assert "lower than the test precision" in words
    for row in ("trials", "best precision@10 = 0.3000 (trial 1)", "this run 12.3 s"):
        assert row in words, row


def test_a_study_without_the_defaults_says_they_were_not_tried():
    words = text_of(report(hand_study(with_defaults=False)))
    assert (
        "The model's defaults (factors=100, regularization=0.01, weighting=stored) were " in words
    )
    assert "not tried in this study" in words and "ran the model's defaults" not in words


def test_the_importance_sentence_says_when_the_methods_disagree_and_not_when_they_agree():
    agree = " ".join(importance_sentences(AGREE, 40))
    assert "Both methods rank regularization first." in agree and "disagree" not in agree
    disagree = " ".join(importance_sentences(DISAGREE, 40))
    assert "The methods disagree: fANOVA ranks regularization first (0.70), PED-ANOVA " in disagree
    assert "ranks factors first (0.60)" in disagree and "Both methods" not in disagree
    assert "fANOVA fits a random forest" in agree and "PED-ANOVA compares" in agree
    assert "The methods disagree" in text_of(report(hand_study(), DISAGREE))
    errored = importance_sentences({"fanova": {"error": "RuntimeError: x"}, "ped_anova": {}}, 1)
    assert "fANOVA could not run: RuntimeError: x" in errored


def test_shared_reused_and_pruned_trials_are_labelled_in_the_table_and_the_plots():
    study = hand_study()
    page = report(study)
    words = text_of(page)
    for label in (
        "recorded from trial 2's fit",
        "reused trial 1's values",
        "pruned at iteration 3",
        "RuntimeError: boom",
        "the model's defaults",
    ):
        assert label in words, label
    for css in ("best", "shared", "reused", "pruned", "failed"):
        assert f'<tr class="{css}">' in page, css
    figures, _ = study_figures(study, AGREE, best=1)
    names = {t["name"] for t in figures["optimization_history"]["data"]}
    assert {
        "recorded from another trial's fit",
        "reused an earlier trial's values",
        "pruned (value when stopped)",
        "best (trial 1)",
    } <= names
    pruned = next(t for t in figures["slice"]["data"] if t["name"].startswith("pruned"))
    assert pruned["marker"]["symbol"] == "x" and "pruned at iteration 3" in pruned["hovertext"][0]


def test_log_parameters_get_log_axes_and_geometric_choices_too():
    figures, _ = study_figures(hand_study())
    layout = figures["slice"]["layout"]
    axes = {layout[k]["title"]["text"]: layout[k] for k in layout if k.startswith("xaxis")}
    assert axes["factors (log)"]["type"] == "log"
    assert axes["regularization (log)"]["type"] == "log"
    assert axes["weighting"]["type"] == "category"
    pairs = figures["param_pairs"]["layout"]
    assert pairs["xaxis"]["type"] == "log" and pairs["yaxis"]["type"] == "log"  # factors, reg.
    assert log_axis(FloatDistribution(0.01, 1000.0, log=True))
    assert log_axis(IntDistribution(16, 256, log=True))
    assert not log_axis(FloatDistribution(0.0, 1.0))
    assert log_axis(CategoricalDistribution([0.01, 0.1, 1.0, 10.0]))  # the grid spaces'
    assert log_axis(CategoricalDistribution([10, 20, 50, 100]))
    assert not log_axis(CategoricalDistribution([10, 20, 30, 40]))
    assert not log_axis(CategoricalDistribution([True, False]))


def test_every_trace_is_one_the_vendored_bundle_draws(fifty):
    _, figures, skipped, _ = fifty
    assert not skipped
    assert set(figures) == {
        "optimization_history",
        "slice",
        "param_pairs",
        "intermediate_values",
        "param_importances",
    }
    used = {trace["type"] for figure in figures.values() for trace in figure["data"]}
    assert used <= bundle_traces() == {"scatter", "bar", "pie"}


def test_a_fifty_trial_report_is_small_and_carries_plotly_js_once(fifty):
    *_, page = fifty
    assert len(page.encode()) < 1.5e6
    assert page.count(PLOTLY_HEADER) == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing to fetch: works offline
    assert page.count('class="plot"') == 5


def test_figures_are_valid_plotly(fifty):
    go = pytest.importorskip("plotly.graph_objects")
    for name, figure in fifty[1].items():
        go.Figure(figure)  # raises on an attribute plotly.js does not have
        assert json.loads(json.dumps(figure)) == figure, name


def test_write_study_reports_logs_the_report_figures_and_importances(tmp_path):
    logged: dict[str, str] = {}

    class Tracker:
        def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
            assert run_id == "parent"
            logged[f"{folder}/{Path(path).name}" if folder else Path(path).name] = Path(
                path
            ).read_text()

    study = hand_study()
    path = write_study_reports(study, summary_of(study), tmp_path, Tracker(), "parent")
    assert path == tmp_path / "hand.html" and path.read_text() == logged["report/hand.html"]
    assert {
        "importance.json",
        "summary.json",
        "report/hand.html",
        "plots/optimization_history.json",
        "plots/slice.json",
        "plots/param_pairs.json",
        "plots/intermediate_values.json",
        "plots/param_importances.json",
    } == set(logged)
    assert set(json.loads(logged["importance.json"])) == {"fanova", "ped_anova"}
    assert json.loads(logged["plots/slice.json"])["data"][0]["type"] == "scatter"
    assert PLOTLY_BUNDLE.startswith("plotly-basic-")


def test_a_study_with_no_values_yet_says_so():
    empty = optuna.create_study(study_name="empty")
    figures, skipped = study_figures(empty, {})
    assert figures == {} and set(skipped) >= {"optimization_history", "slice"}
    words = text_of(render_report(empty, {}, figures, skipped, {}))
    assert "No trial completed, so there is no best trial yet." in words
    assert PLOTLY_HEADER not in render_report(empty, {}, figures, skipped, {})


def test_figure_json_cannot_end_the_script_it_sits_in():
    figure = {"data": [{"type": "scatter", "name": "</script><!-- x"}], "layout": {}}
    text = figure_json(figure)
    assert "<" not in text and json.loads(text) == figure


def test_a_multi_objective_study_draws_its_pareto_front():
    go = pytest.importorskip("plotly.graph_objects")
    study = optuna.create_study(study_name="two", directions=["maximize", "maximize"])
    space = {"factors": IntDistribution(16, 256, log=True)}
    for factors, values in ((16, [0.1, 0.9]), (64, [0.3, 0.5]), (128, [0.2, 0.4])):
        study.add_trial(
            optuna.trial.create_trial(
                values=values, params={"factors": factors}, distributions=space
            )
        )
    figures, skipped = study_figures(study, best=1)
    front = {t["name"]: t for t in figures["pareto_front"]["data"]}
    assert front["Pareto front"]["x"] == [0.1, 0.3] and front["dominated"]["x"] == [0.2]
    assert "intermediate_values" not in figures and skipped == {
        "param_pairs": "needs two searched parameters"
    }
    for figure in figures.values():
        go.Figure(figure)


def test_a_one_point_space_skips_the_slice_plot_and_still_draws_the_history():
    """No parameter searched (benchmarks/scale.py's one-point space): no slice plot,
    and no division by zero laying out its subplots."""
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: 0.5, n_trials=2)
    figures, skipped = study_figures(study)
    assert "optimization_history" in figures
    assert skipped["slice"] == "no parameter is searched"
