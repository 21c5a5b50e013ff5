"""Spider execution accuracy as a DeepEval metric (no LLM judge involved).

A seed brief said a match should "return 1.8"; that was a typo: scores are
1.0 (the prediction's result equals the gold result) or 0.0.
"""

from pathlib import Path

from deepeval.metrics import BaseMetric
from deepeval.metrics.utils import check_llm_test_case_params, construct_verbose_logs
from deepeval.test_case import LLMTestCase, SingleTurnParams

from lora_tradeoff.spider.execution import DEFAULT_ROW_CAP, DEFAULT_TIMEOUT_S, Mode, check_limits, score_pair
from lora_tradeoff.spider.extraction import SqlBlock, check_sql_block

DB_PATH_KEY = "db_path"


class ExecutionAccuracy(BaseMetric):
    """1.0 when the SQL in `actual_output` returns the same result as `expected_output`.

    Test case fields: `input` = the question, `actual_output` = raw model output
    (the SQL is extracted from it), `expected_output` = gold SQL,
    `metadata["db_path"]` = the SQLite database. Comparison rules are those of
    `lora_tradeoff.spider.execution.score_pair` in `mode`; `sql_block` ("first" or "last") says which
    SQL block of an output with several (a draft, then the final query) is scored. A missing `db_path` (no metadata,
    a misspelt key, a file that does not exist) fails the case with a reason naming the
    path: a skipped metric would let `evaluate()` report the case as passed. (The
    workflow's own scoring counts questions whose database is absent as skipped.)
    After `measure`: `score`, `success`, `reason`, `extracted_sql` and
    `score_breakdown` (extracted SQL, status, category, row counts, seconds,
    ignored statements).

    An empty, whitespace-only or missing (None) `actual_output` is a failed
    prediction (score 0.0, reason "empty prediction"), not an error: DeepEval's
    own parameter check would raise MissingTestCaseParamsError for "" or None
    and abort `evaluate()` over the other cases, so `actual_output` is left
    out of the checked parameters. Each query is stopped at `timeout_s` by
    killing its worker process (`lora_tradeoff.spider.execution.execute_query`).
    """

    # actual_output is deliberately not required: see the class docstring.
    _required_params = [
        SingleTurnParams.INPUT,
        SingleTurnParams.EXPECTED_OUTPUT,
    ]

    def __init__(
        self,
        threshold: float = 1.0,
        mode: Mode = "spider",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        row_cap: int = DEFAULT_ROW_CAP,
        verbose_mode: bool = False,
        sql_block: SqlBlock = "first",
    ):
        check_limits(timeout_s, row_cap)  # a limit that fails every query is a setup error: say so now
        self.sql_block = check_sql_block(sql_block)
        self.threshold = threshold
        self.mode = mode
        self.timeout_s = timeout_s
        self.row_cap = row_cap
        self.verbose_mode = verbose_mode
        self.include_reason = True
        self.async_mode = False
        self.extracted_sql: str | None = None

    def measure(self, test_case: LLMTestCase, *args, **kwargs) -> float:
        check_llm_test_case_params(test_case, self._required_params, None, None, self)
        db_path = (test_case.metadata or {}).get(DB_PATH_KEY)
        result = score_pair(
            Path(db_path) if db_path else None,
            test_case.expected_output,
            test_case.actual_output or "",
            mode=self.mode,
            timeout_s=self.timeout_s,
            row_cap=self.row_cap,
            sql_block=self.sql_block,
        )
        self.extracted_sql = result.extracted_sql
        self.score = result.score
        self.reason = result.reason
        if result.status == "skipped":
            self.reason = (
                f"{result.reason}: set metadata[{DB_PATH_KEY!r}] to the SQLite file of the question's database"
            )
        self.score_breakdown = {
            "extracted_sql": result.extracted_sql,
            "status": result.status,
            "category": result.category,
            "gold_rows": result.gold_rows,
            "pred_rows": result.pred_rows,
            "seconds": result.seconds,
            "ignored_statements": result.ignored_statements,
        }
        self.success = self.is_successful()
        self.verbose_logs = construct_verbose_logs(
            self,
            steps=[
                f"Extracted SQL: {result.extracted_sql!r}",
                f"Status: {result.status} ({result.category})",
                f"Score: {self.score:.1f}\nReason: {self.reason}",
            ],
        )
        return self.score

    async def a_measure(self, test_case: LLMTestCase, *args, **kwargs) -> float:
        # Execution is bounded by the sandbox's time limit; nothing to await.
        return self.measure(test_case, *args, **kwargs)

    @property
    def __name__(self) -> str:
        return "Execution Accuracy"
