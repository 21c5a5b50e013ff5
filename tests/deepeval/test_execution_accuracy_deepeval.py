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


def case_for(spider_dir: Path, item: dict, output: str) -> LLMTestCase:
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


def test_missing_database_is_skipped_not_failed(spider_dir: Path, spider_dev: list[dict]) -> None:
    item = spider_dev[429]  # wta_1, absent from ../shared/data
    metric = ExecutionAccuracy()
    metric.measure(case_for(spider_dir, item, item["query"]))
    assert metric.skipped is True
    assert metric.is_successful() is None
    assert metric.reason.startswith("database missing: ")


def test_threshold_is_configurable(spider_dir: Path, spider_dev: list[dict]) -> None:
    metric = ExecutionAccuracy(threshold=0.0)
    metric.measure(case_for(spider_dir, spider_dev[0], "SELECT 42"))
    assert (metric.score, metric.success) == (0.0, True)
