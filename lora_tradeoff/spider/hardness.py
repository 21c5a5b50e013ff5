"""Spider's hardness levels (easy / medium / hard / extra) from a parsed `sql` dict.

Re-implements the published rules of Spider's evaluation.py (`eval_hardness`
with `count_component1`, `count_component2`, `count_others`) on the parsed form
stored in dev.json. Quirks of the original are kept because they decide the
official level counts (dev: 248 / 446 / 174 / 166):

- "has an aggregate" is ``unit[0] != 0`` for every unit it is asked about. For
  WHERE conditions that first field is the NOT flag, and HAVING is passed whole,
  so its 'and'/'or' connector strings count as aggregates as well.
- Only the top level is counted; nested queries add to component2 but their
  own clauses are not counted.

Parsed-sql layout: condition = [cond_unit, 'and'/'or', cond_unit, ...];
cond_unit = (not_op, op_id, val_unit, val1, val2); val_unit = (unit_op,
col_unit1, col_unit2); col_unit = (agg_id, col_id, distinct);
select = (distinct, [(agg_id, val_unit), ...]); orderBy = (dir, [val_unit, ...]).
"""

from collections.abc import Sequence
from typing import Any

_LIKE_OP = 9  # index of 'like' in evaluation.py's WHERE_OPS
_NO_AGG = 0  # index of 'none' in AGG_OPS

Sql = dict[str, Any]


def _count_agg(units: Sequence) -> int:
    return sum(1 for unit in units if unit[0] != _NO_AGG)


def _nested(sql: Sql) -> list[Sql]:
    """Subqueries in condition values plus INTERSECT / EXCEPT / UNION parts."""
    nested = [
        value
        for sql_part in (sql["from"]["conds"], sql["where"], sql["having"])
        for cond in sql_part[::2]
        for value in (cond[3], cond[4])
        if isinstance(value, dict)
    ]
    nested += [sql[op] for op in ("intersect", "except", "union") if sql[op] is not None]
    return nested


def count_component1(sql: Sql) -> int:
    """WHERE, GROUP BY, ORDER BY, LIMIT, each extra joined table, each OR, each LIKE."""
    count = sum(bool(sql[key]) for key in ("where", "groupBy", "orderBy"))
    count += sql["limit"] is not None
    count += max(len(sql["from"]["table_units"]) - 1, 0)
    conditions = [sql["from"]["conds"], sql["where"], sql["having"]]
    count += sum(token == "or" for part in conditions for token in part[1::2])
    count += sum(cond[1] == _LIKE_OP for part in conditions for cond in part[::2])
    return count


def count_component2(sql: Sql) -> int:
    """Number of nested queries and set operations at the top level."""
    return len(_nested(sql))


def count_others(sql: Sql) -> int:
    """One point each for: >1 aggregate, >1 selected column, >1 WHERE entry, >1 GROUP BY column.

    "WHERE entry" is the original's ``len(sql['where']) > 1``, i.e. any second
    condition (the list holds connectors too).
    """
    order_units = sql["orderBy"][1] if sql["orderBy"] else []
    agg_count = (
        _count_agg(sql["select"][1])
        + _count_agg(sql["where"][::2])
        + _count_agg(sql["groupBy"])
        + _count_agg([unit[1] for unit in order_units if unit[1]])
        + _count_agg([unit[2] for unit in order_units if unit[2]])
        + _count_agg(sql["having"])
    )
    return sum(
        (
            agg_count > 1,
            len(sql["select"][1]) > 1,
            len(sql["where"]) > 1,
            len(sql["groupBy"]) > 1,
        )
    )


def spider_hardness(sql: Sql) -> str:
    """Spider's hardness level ("easy", "medium", "hard" or "extra") of a parsed query."""
    comp1, comp2, others = count_component1(sql), count_component2(sql), count_others(sql)
    if comp1 <= 1 and others == 0 and comp2 == 0:
        return "easy"
    if (others <= 2 and comp1 <= 1 and comp2 == 0) or (comp1 <= 2 and others < 2 and comp2 == 0):
        return "medium"
    if (
        (others > 2 and comp1 <= 2 and comp2 == 0)
        or (2 < comp1 <= 3 and others <= 2 and comp2 == 0)
        or (comp1 <= 1 and others == 0 and comp2 <= 1)
    ):
        return "hard"
    return "extra"
