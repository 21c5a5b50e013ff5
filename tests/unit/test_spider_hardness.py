"""spider_hardness: Spider's published hardness rules on the parsed `sql` field."""

from collections import Counter

from lora_tradeoff.spider.hardness import count_component1, count_component2, count_others, spider_hardness

COL = [0, [0, 1, False], None]  # val_unit: plain column 1
COUNT_STAR = [3, [0, [0, 0, False], None]]  # select item: count(*)


def cond(op: int = 2, value: object = 1.0, not_op: bool = False) -> list:
    """cond_unit `column 1 <op> value`; op 2 is '=', 9 is 'like'."""
    return [not_op, op, COL, value, None]


def sql(**parts: object) -> dict:
    """A parsed query `SELECT column 1 FROM table 0`, with `parts` overriding clauses."""
    base = {
        "select": [False, [[0, COL]]],
        "from": {"table_units": [["table_unit", 0]], "conds": []},
        "where": [],
        "groupBy": [],
        "having": [],
        "orderBy": [],
        "limit": None,
        "intersect": None,
        "union": None,
        "except": None,
    }
    return base | parts


def test_levels_from_component_counts() -> None:
    assert spider_hardness(sql()) == "easy"
    assert spider_hardness(sql(where=[cond()])) == "easy"  # one component1
    two_cols = [False, [[0, COL], COUNT_STAR]]
    assert spider_hardness(sql(select=two_cols)) == "medium"  # others == 1
    assert spider_hardness(sql(where=[cond()], limit=1)) == "medium"  # component1 == 2
    three = {"where": [cond()], "limit": 1, "orderBy": ["asc", [COL]]}
    assert spider_hardness(sql(**three)) == "hard"  # component1 == 3
    assert spider_hardness(sql(union=sql())) == "hard"  # one set operation, nothing else
    assert spider_hardness(sql(union=sql(), select=two_cols)) == "extra"
    assert spider_hardness(sql(**three, groupBy=[[0, 1, False]])) == "extra"  # component1 == 4


def test_component1_counts_joins_or_and_like() -> None:
    joined = {"table_units": [["table_unit", 0], ["table_unit", 1], ["table_unit", 2]], "conds": []}
    assert count_component1(sql() | {"from": joined}) == 2
    assert count_component1(sql(where=[cond(), "or", cond(op=9, value='"%a%"')])) == 3


def test_component2_counts_subqueries_and_set_operations() -> None:
    assert count_component2(sql(where=[cond(value=sql())]) | {"except": sql()}) == 2


def test_others_counts_not_flag_and_having_connectors_as_aggregates() -> None:
    # evaluation.py asks has_agg (unit[0] != 0) about WHERE cond_units, whose
    # first field is the NOT flag, and about HAVING including 'and'/'or'.
    assert count_others(sql(where=[cond(not_op=True)], select=[False, [COUNT_STAR]])) == 1
    assert count_others(sql(where=[cond()], select=[False, [COUNT_STAR]])) == 0
    counted = [False, [COUNT_STAR]]
    assert count_others(sql(select=counted, having=[cond()])) == 0
    assert count_others(sql(select=counted, having=[cond(), "and", cond()])) == 1  # 'and' is one
    assert count_others(sql(where=[cond(), "and", cond()])) == 1  # len(where) > 1


def test_official_dev_counts(spider_dev: list[dict]) -> None:
    counts = Counter(spider_hardness(item["sql"]) for item in spider_dev)
    assert counts == {"easy": 248, "medium": 446, "hard": 174, "extra": 166}
