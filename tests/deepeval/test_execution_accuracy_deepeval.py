"""ExecutionAccuracy on real Spider dev rows, through DeepEval.

Runs offline under plain pytest and under
`deepeval test run tests/deepeval/test_execution_accuracy_deepeval.py`.
"""

import os

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "YES")

import asyncio  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from deepeval import assert_test  # noqa: E402
from deepeval.test_case import LLMTestCase  # noqa: E402

from custom_metrics import ExecutionAccuracy  # noqa: E402

# dev index -> how the model wrapped the (otherwise correct) answer
WRAPPINGS = {
    0: "```sql\n{sql};\n```",
    46: "SQL: {sql}<|im_end|>",
    200: "Here is the query:\n\n{sql}\n\nIt answers the question.",
    700: "{sql}",
}


def case_for(spider_dir: Path, item: dict, output: str | None) -> LLMTestCase:
    db = spider_dir / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
    return LLMTestCase(
        input=item["question"],
        actual_output=output,
        expected_output=item["query"],
        metadata={"db_path": str(db)},
    )


@pytest.mark.parametrize("index", WRAPPINGS)
def test_correct_answers_pass(index: int, spider_dir: Path, spider_dev: list[dict]) -> None:
    item = spider_dev[index]
    output = WRAPPINGS[index].format(sql=item["query"])
    assert_test(case_for(spider_dir, item, output), [ExecutionAccuracy()])


def test_wrong_answer_scores_zero_with_reason(spider_dir: Path, spider_dev: list[dict]) -> None:
    item = spider_dev[0]  # How many singers do we have? -> SELECT count(*) FROM singer
    metric = ExecutionAccuracy()
    score = metric.measure(case_for(spider_dir, item, "```sql\nSELECT count(*) FROM stadium\n```"))
    assert (score, metric.score, metric.success, metric.is_successful()) == (0.0, 0.0, False, False)
    assert metric.reason == "different values"
    assert metric.extracted_sql == "SELECT count(*) FROM stadium"
    assert metric.score_breakdown["extracted_sql"] == "SELECT count(*) FROM stadium"
    assert metric.__name__ == "Execution Accuracy"


def test_failing_sql_reports_the_error(spider_dir: Path, spider_dev: list[dict]) -> None:
    metric = ExecutionAccuracy()
    metric.measure(case_for(spider_dir, spider_dev[0], "DELETE FROM singer"))
    assert (metric.score, metric.success) == (0.0, False)
    assert metric.reason.startswith("prediction failed: not authorized: DELETE singer")


def test_async_measure_matches(spider_dir: Path, spider_dev: list[dict]) -> None:
    metric = ExecutionAccuracy()
    item = spider_dev[46]
    assert asyncio.run(metric.a_measure(case_for(spider_dir, item, item["query"]))) == 1.0
    assert metric.success is True


def test_a_missing_database_fails_the_case_naming_the_path(spider_dir: Path, spider_dev: list[dict]) -> None:
    """A wrong or absent db_path must not pass silently in evaluate() (a skipped metric would)."""
    item = spider_dev[429]  # wta_1, absent from ../shared/data
    metric = ExecutionAccuracy()
    metric.measure(case_for(spider_dir, item, item["query"]))
    assert (metric.score, metric.success) == (0.0, False)
    assert metric.reason.startswith("database missing: ") and "wta_1.sqlite" in metric.reason
    assert "set metadata['db_path']" in metric.reason
    no_metadata = LLMTestCase(input="q", actual_output="SELECT 1", expected_output="SELECT 1")
    assert ExecutionAccuracy().measure(no_metadata) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": None}, "timeout_s"),
        ({"row_cap": 0}, "row_cap"),
        ({"row_cap": -1}, "row_cap"),
    ],
)
def test_limits_that_would_fail_every_case_are_refused_at_once(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExecutionAccuracy(**kwargs)


def test_deeply_nested_json_output_is_scored_not_raised(spider_dir: Path, spider_dev: list[dict]) -> None:
    """Python's JSON parser recurses: 1000 levels of nesting raised RecursionError out of evaluate()."""
    metric = ExecutionAccuracy()
    for output in ('{"a":' * 1000, '{"a":' + "[" * 1000):
        assert metric.measure(case_for(spider_dir, spider_dev[0], output)) == 0.0
        assert metric.score_breakdown["category"] == "empty"


def test_threshold_is_configurable(spider_dir: Path, spider_dev: list[dict]) -> None:
    metric = ExecutionAccuracy(threshold=0.0)
    metric.measure(case_for(spider_dir, spider_dev[0], "SELECT 42"))
    assert (metric.score, metric.success) == (0.0, True)


@pytest.mark.parametrize("output", ["", "   \n\t", None])
def test_empty_or_missing_output_scores_zero_without_raising(
    output: str | None, spider_dir: Path, spider_dev: list[dict]
) -> None:
    metric = ExecutionAccuracy()
    assert metric.measure(case_for(spider_dir, spider_dev[0], output)) == 0.0
    assert (metric.score, metric.success, metric.reason) == (0.0, False, "empty prediction")
    assert metric.score_breakdown["category"] == "empty"


def test_evaluate_over_many_cases_survives_bad_rows(spider_dir: Path, spider_dev: list[dict]) -> None:
    """An empty row, a hard timeout and a second statement among correct rows: every case gets a score."""
    from deepeval import evaluate
    from deepeval.evaluate.configs import AsyncConfig, DisplayConfig

    first = spider_dev[0]  # SELECT count(*) FROM singer
    outputs = [
        first["query"],
        "",
        None,
        "SELECT count(*) FROM singer WHERE printf('%.*c', 2000000000 + Singer_ID, 'x') IS NULL",
        f"{first['query']}; DROP TABLE singer",
    ]
    cases = [case_for(spider_dir, first, output) for output in outputs]
    result = evaluate(
        cases,
        [ExecutionAccuracy(timeout_s=1.0)],
        async_config=AsyncConfig(run_async=False),
        display_config=DisplayConfig(show_indicator=False, print_results=False),
    )
    scores = [test.metrics_data[0].score for test in result.test_results]
    reasons = [test.metrics_data[0].reason for test in result.test_results]
    assert scores == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert reasons[1:4] == ["empty prediction", "empty prediction", "prediction failed: timed out after 1 s"]


def test_long_function_call_times_out_in_the_metric(spider_dir: Path, spider_dev: list[dict]) -> None:
    metric = ExecutionAccuracy(timeout_s=1.0)
    sql = "SELECT count(*) FROM singer WHERE printf('%.*c', 2000000000 + Singer_ID, 'x') IS NULL"
    metric.measure(case_for(spider_dir, spider_dev[0], sql))
    assert (metric.score, metric.score_breakdown["category"]) == (0.0, "timeout")
    assert metric.score_breakdown["seconds"] < 2.0


# Issue 31: the answer shapes real models write, through the metric on the real database.
# {sql} is the gold query of dev 0 (How many singers do we have?), {draft} a wrong one.
ANSWER_SHAPES = [
    "{sql}; this returns the number of singers",
    "<answer>{sql}</answer>",
    "<solution>\n```sql\n{sql}\n```\n</solution>",
    "**{sql}**",
    "<pre><code>{sql}</code></pre>\n| count(*) |\n|---|\n| 6 |",
    "{sql}<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<|channel|>analysis<|message|>{draft};\n<|end|><|start|>assistant<|channel|>final<|message|>{sql}<|return|>",
    "~~~sql\n{sql}\n~~~",
    "```\nsinger(singer_id, name, age)\n```\n```sql\n{sql}\n```",
]
NOT_ANSWERS = [
    "<|channel|>analysis<|message|>{sql};<|end|>",  # the draft only: no final answer
    "Select every row of the singer table",
    "<answer>{draft}</answer>",
    "~~~sql\n{draft}\n~~~",
]
DRAFT_SQL = "SELECT count(*) FROM stadium"


@pytest.mark.parametrize("shape", ANSWER_SHAPES)
def test_answer_shapes_score_one(shape: str, spider_dir: Path, spider_dev: list[dict]) -> None:
    item = spider_dev[0]
    metric = ExecutionAccuracy()
    assert metric.measure(case_for(spider_dir, item, shape.format(sql=item["query"], draft=DRAFT_SQL))) == 1.0


@pytest.mark.parametrize("shape", NOT_ANSWERS)
def test_shapes_without_the_answer_score_zero(shape: str, spider_dir: Path, spider_dev: list[dict]) -> None:
    item = spider_dev[0]
    metric = ExecutionAccuracy()
    assert metric.measure(case_for(spider_dir, item, shape.format(sql=item["query"], draft=DRAFT_SQL))) == 0.0


def test_sql_block_scores_the_draft_or_the_final_query(spider_dir: Path, spider_dev: list[dict]) -> None:
    item = spider_dev[0]
    output = f"```sql\n{DRAFT_SQL}\n```\nNo: the question asks for singers.\n```sql\n{item['query']}\n```"
    assert ExecutionAccuracy().measure(case_for(spider_dir, item, output)) == 0.0
    last = ExecutionAccuracy(sql_block="last")
    assert last.measure(case_for(spider_dir, item, output)) == 1.0
    assert last.extracted_sql == item["query"]
    with pytest.raises(ValueError, match="generation.sql_block"):
        ExecutionAccuracy(sql_block="final")
