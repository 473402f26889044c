"""Querysets compiled to SQL once per database and then run with new parameters.

Django compiles a queryset to SQL every time it is evaluated. For the two statements every
WebSocket message makes (find the session with its gateway and user; count the request) that
compiling costs more than running them, and the SQL depends only on the database, never on the
connection id. So compile once per database alias with a marker value in place of the
parameter, and afterwards only swap the marker for the real value. Rows become model instances
through the same machinery as ``QuerySet.__iter__`` (``from_db`` plus ``select_related``'s
populators), so instances are indistinguishable from the ORM's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from django.db import connections, router, transaction
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

ModelT = TypeVar("ModelT", bound=Model)
# Stands in for the parameter while compiling; lookups must therefore be on text fields.
MARKER = "__prepared_query_parameter_5b1e__"


@dataclass(frozen=True)
class _RowPlan:
    """How one row becomes the model instance and its ``select_related`` instances."""

    converters: dict[int, Any]
    model: type[Model]
    names: list[str]
    first: int
    last: int
    populators: list[Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    marker_index: int
    compiler: Any
    plan: _RowPlan | None = None

    def bind(self, value: Any) -> list[Any]:
        params = list(self.params)
        params[self.marker_index] = value
        return params


def _compile(compiler: Any) -> _Compiled:
    sql, params = compiler.as_sql()
    params = tuple(params)
    positions = [index for index, param in enumerate(params) if param == MARKER]
    if len(positions) != 1:
        raise ValueError("a prepared query must use its parameter exactly once")
    return _Compiled(sql, params, positions[0], compiler)


class _PerDatabase:
    """Compiled statements by database alias (compiled on first use, then read-only)."""

    def __init__(self, compile_for: Callable[[str], _Compiled]) -> None:
        self._compile_for = compile_for
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def get(self, alias: str) -> _Compiled:
        compiled = self._compiled.get(alias)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(alias) or self._compile_for(alias)
                self._compiled[alias] = compiled
        return compiled


class PreparedGet(Generic[ModelT]):
    """``build(value).get()`` for a unique lookup, without compiling the SQL each time.

    ``build`` receives the parameter and returns the queryset; it may use ``select_related``
    but must filter on a unique field, since only the first row is read. Returns ``None``
    when no row matches.
    """

    def __init__(self, build: Callable[[Any], QuerySet[ModelT]]) -> None:
        self._build = build
        self._model = build(MARKER).model
        self._statements = _PerDatabase(self._compile_for)

    def _compile_for(self, alias: str) -> _Compiled:
        compiled = _compile(self._build(MARKER).query.get_compiler(using=alias))
        compiler = compiled.compiler
        # as_sql() filled select and klass_info: plan the row-to-instances step once as well,
        # as QuerySet iteration would on every evaluation.
        klass_info, select = compiler.klass_info, compiler.select
        first, last = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        plan = _RowPlan(
            converters=compiler.get_converters(
                [column[0] for column in select[: compiler.col_count]]
            ),
            model=klass_info["model"],
            names=[column[0].target.attname for column in select[first:last]],
            first=first,
            last=last,
            populators=get_related_populators(klass_info, select, alias),
        )
        return replace(compiled, plan=plan)

    def __call__(self, value: Any) -> ModelT | None:
        alias = router.db_for_read(self._model)
        compiled = self._statements.get(alias)
        with connections[alias].cursor() as cursor:
            cursor.execute(compiled.sql, compiled.bind(value))
            row = cursor.fetchone()
        if row is None:
            return None
        plan = compiled.plan
        assert plan is not None  # set by _compile_for
        if plan.converters:
            row = next(iter(compiled.compiler.apply_converters([row], plan.converters)))
        instance = plan.model.from_db(alias, plan.names, row[plan.first : plan.last])
        for populator in plan.populators:
            populator.populate(row, instance)
        return instance


class PreparedUpdate:
    """``model.objects.filter(**{field: value}).update(**changes)``, compiled once per database.

    ``changes`` are fixed when the statement is made (e.g. ``F("count") + 1``); only the
    filter value varies. Returns the number of rows updated, like ``QuerySet.update``.
    """

    def __init__(self, model: type[Model], field: str, **changes: Any) -> None:
        self._model = model
        self._field = field
        self._changes = changes
        self._statements = _PerDatabase(self._compile_for)

    def _compile_for(self, alias: str) -> _Compiled:
        from django.db.models.sql import UpdateQuery

        query = self._model._default_manager.filter(**{self._field: MARKER}).query
        update = query.chain(UpdateQuery)
        update.add_update_values(self._changes)
        update.clear_select_clause()
        return _compile(update.get_compiler(using=alias))

    def __call__(self, value: Any) -> int:
        alias = router.db_for_write(self._model)
        compiled = self._statements.get(alias)
        with (
            transaction.mark_for_rollback_on_error(using=alias),
            connections[alias].cursor() as cursor,
        ):
            cursor.execute(compiled.sql, compiled.bind(value))
            return cursor.rowcount
