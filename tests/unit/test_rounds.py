"""The loop's pure parts for a multiclass problem: the format the LLM is reminded of names the classes, a change
of class is a strong change, votes pick the class most samples name (ties keep the model's)."""

from __future__ import annotations

from llmcorr.correct.corrector import correction_output, interpret
from llmcorr.correct.rounds import Round, Sample, combine, double_check_request, format_reminder, strong_change

CLASSES = ("setosa", "versicolor", "virginica")


def sample(*indices: float | None) -> Sample:
    return Sample([Round("answer", "", i is not None, i) for i in indices])


def test_reminders_name_the_classes_and_the_models_class() -> None:
    reminder = format_reminder("multiclass", "a rose", CLASSES)[-1].content
    assert reminder.endswith("Prediction: <one of: setosa, versicolor, virginica>; Explanation: <one short sentence>")
    check = double_check_request("multiclass", "Prediction: virginica", 1.0, CLASSES)[-1].content
    assert "the model predicted versicolor" in check and "<one of: setosa, versicolor, virginica>" in check
    assert "<True or False>" in format_reminder("classification", "x")[-1].content  # binary unchanged


def test_strong_change_and_votes() -> None:
    assert strong_change("multiclass", 1.0, 2.0, 0.5) and not strong_change("multiclass", 1.0, 1.0, 0.5)
    assert combine("multiclass", 1.0, [sample(2.0), sample(2.0), sample(1.0)]) == (
        2.0,
        {"votes": 3, "for_flip": 2, "for_model": 1},
    )
    assert combine("multiclass", 1.0, [sample(2.0), sample(1.0)])[0] == 1.0  # a tie with the model: the model's
    assert combine("multiclass", 1.0, [sample(0.0), sample(2.0)])[0] == 1.0  # no class leads alone: the model's
    assert combine("multiclass", 1.0, [sample(None), sample(0.0)])[0] == 0.0  # unparsed answers do not vote
    assert combine("multiclass", 1.0, [sample(None)]) == (1.0, {"votes": 0})


def test_an_answer_becomes_the_class_it_names_and_anything_else_keeps_the_models() -> None:
    named = interpret("multiclass", 0.0, "Prediction: VIRGINICA; Explanation: long petals", CLASSES)
    assert named.parsed.ok and named.corrected == 2.0
    assert named.output == {"corrected_prediction": "virginica", "explanation": "long petals"}
    unread = interpret("multiclass", 0.0, "Prediction: rose", CLASSES)
    assert not unread.parsed.ok and unread.corrected == 0.0 and unread.output["corrected_prediction"] == "setosa"
    assert correction_output("multiclass", 1.0, None, (3, 5, 7)) == {"corrected_prediction": 5, "explanation": None}
