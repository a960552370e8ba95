"""The label rules have one home (`vigil.labels`): the logger accepts a feedback truth exactly when
the metrics service can score it.

For classification (declared classes, two classes, none declared), regression and no task,
a table of truths is checked both ways: `vigil.logger.truth.check_truth` (a 400
``bad_truth`` or nothing) and the metrics scorer's `decode` of the same value (a
`PayloadError` or labels). They must agree on every row; the rows cover what each of the two
former copies of the rules decided differently (an array of probabilities mixed with
whole numbers, a digit string naming an index, booleans).
"""

from __future__ import annotations

import pytest

from vigil.errors import InvalidInput
from vigil.events import PayloadError
from vigil.labels import ClassLabels, check_labels
from vigil.logger.truth import check_truth
from vigil_detectors.metrics.scoring import ClassificationScorer, RegressionScorer

IRIS = ["setosa", "versicolor", "virginica"]
TRUTHS = ["virginica", "rose", 2, 3, 0.0, 1.5, 0.3, [0.3, 2], ["setosa", 1], "2", "7", [[0.1, 0.2, 0.7]], [[1, 2]],
          [[1], [0]], True, [1, True], [[[1]]], [], [1, None], [[1], 2], 10**400, float("nan"), -1, [0.9, 0.1]]
CASES = [("classification", IRIS), ("classification", ["no", "yes"]), ("classification", [1, 2, 3]),
         ("classification", None), ("regression", None)]


def logger_accepts(truth, task, classes) -> bool:
    try:
        check_truth(truth, task, classes)
    except InvalidInput as exc:
        assert exc.reason == "bad_truth" and exc.status == 400
        return False
    return True


def metrics_scores(truth, task, classes) -> bool:
    scorer = ClassificationScorer(classes, window=10) if task == "classification" else RegressionScorer(window=10)
    try:
        scorer.decode(truth, "truth")
    except PayloadError:
        return False
    return True


@pytest.mark.parametrize("task, classes", CASES)
def test_the_logger_accepts_exactly_what_metrics_scores(task, classes):
    verdicts = {repr(t): (logger_accepts(t, task, classes), metrics_scores(t, task, classes)) for t in TRUTHS}
    differ = {t: v for t, v in verdicts.items() if v[0] != v[1]}
    assert not differ, differ
    accepted = sum(a for a, _ in verdicts.values())
    assert 0 < accepted < len(TRUTHS)  # the table holds both kinds for every task


def test_the_rules_themselves():
    iris = ClassLabels(IRIS)
    assert iris.decode(["virginica", "2", 0, 1], "t").tolist() == [2, 2, 0, 1]
    assert iris.decode([0, 1.0, 2], "t").tolist() == [0, 1, 2]
    assert iris.decode([[0.1, 0.7, 0.2]], "t").tolist() == [1]
    assert ClassLabels([1, 2, 3]).decode([3, 1], "t").tolist() == [2, 0]  # class values before indices
    assert ClassLabels(["no", "yes"]).decode([0.2, 0.8], "t").tolist() == [0, 1]  # P(positive class)
    with pytest.raises(PayloadError, match="probabilities"):
        iris.decode([0.3, 0.6], "t")  # three classes: no positive class
    with pytest.raises(PayloadError, match="probabilities"):
        ClassLabels(None).decode([0.3, 2], "t")  # neither all whole nor all probabilities
    learned = ClassLabels(None, max_classes=2)
    assert learned.resolve(learned.decode(["b", "a", "b"], "t")).tolist() == [0, 1, 0]
    with pytest.raises(PayloadError) as err:
        learned.resolve(learned.decode(["c"], "t"))
    assert err.value.reason == "too_many_classes"
    for bad in (["a"], ["a", "a"]):
        with pytest.raises(ValueError):
            ClassLabels(bad)


def test_booleans_are_refused_from_people_and_read_as_numbers_from_models():
    with pytest.raises(PayloadError) as err:
        ClassLabels(["no", "yes"]).decode(True, "truth")
    assert err.value.reason == "bad_label" and "true is not a label" in err.value.message
    with pytest.raises(PayloadError):
        check_labels([[0.2, False]], None, None, "truth")
    answer = {"outputs": [{"name": "predict", "datatype": "BOOL", "shape": [2], "data": [True, False]}]}
    assert ClassLabels(["no", "yes"]).decode(answer, "response", booleans=True).tolist() == [1, 0]
    assert RegressionScorer(window=2).decode([True], "response", booleans=True).tolist() == [1.0]


def test_the_logger_refuses_bodies_and_settings_refuse_bad_classes():
    body = {"predictions": [1]}
    assert metrics_scores(body, "classification", IRIS)  # a detector event may carry a model-answer body
    assert not logger_accepts(body, "classification", IRIS)  # POST /feedback takes labels, not bodies
    from pydantic import ValidationError

    from vigil.logger.settings import LoggerSettings

    with pytest.raises(ValidationError, match="at least two classes"):
        LoggerSettings(task="classification", classes=["only"])
    assert LoggerSettings(task="classification", classes=IRIS).classes == IRIS
