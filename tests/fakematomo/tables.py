"""Matomo's generic table filters: flat, expanded, idSubtable, pattern, sort, limit, columns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
DEFAULT_LIMIT = 100  # [General] API_datatable_default_limit


@dataclass(frozen=True)
class TableOptions:
    flat: bool = False
    expanded: bool = False
    id_subtable: int | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort_column: str | None = None
    sort_desc: bool = True
    pattern: str | None = None
    pattern_column: str = "label"
    show: tuple[str, ...] = ()
    hide: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TableOptions:
        def as_int(name: str, default: int) -> int:
            try:
                return int(params.get(name, default))
            except ValueError:
                return default

        def columns(name: str) -> tuple[str, ...]:
            return tuple(c.strip() for c in params.get(name, "").split(",") if c.strip())

        sub = params.get("idSubtable", "")
        return cls(
            flat=params.get("flat", "0") == "1",
            expanded=params.get("expanded", "0") == "1",
            id_subtable=int(sub) if sub.isdigit() else None,
            limit=as_int("filter_limit", DEFAULT_LIMIT),
            offset=max(0, as_int("filter_offset", 0)),
            sort_column=params.get("filter_sort_column") or None,
            sort_desc=params.get("filter_sort_order", "desc").lower() != "asc",
            pattern=params.get("filter_pattern") or None,
            pattern_column=params.get("filter_column") or "label",
            show=columns("showColumns"),
            hide=columns("hideColumns"),
        )


def number(value: Any) -> float:
    """Coerce Matomo's mixed number types ("84%", "11", 11) for sorting."""
    if isinstance(value, bool) or value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).rstrip("%"))
    except ValueError:
        return 0.0


def _number_subtables(rows: list[Row]) -> dict[int, list[Row]]:
    """Deterministic idsubdatatable numbering (breadth first), stable across requests."""
    found: dict[int, list[Row]] = {}
    queue = list(rows)
    next_id = 1
    while queue:
        row = queue.pop(0)
        sub = row.get("_sub")
        if sub:
            row["_id"] = next_id
            found[next_id] = sub
            next_id += 1
            queue.extend(sub)
    return found


def _flatten(rows: list[Row]) -> list[Row]:
    flat: list[Row] = []
    for row in rows:
        sub = row.get("_sub")
        if sub:
            flat.extend(_flatten(sub))
            continue
        copy = dict(row)
        copy["label"] = row.get("_flat_label", row["label"])
        copy.update(row.get("_flat_extra") or {})
        flat.append(copy)
    return flat


def _render(row: Row, opts: TableOptions) -> Row:
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    if not opts.flat and "_id" in row:
        out["idsubdatatable"] = row["_id"]
        if opts.expanded:
            out["subtable"] = [_render(r, opts) for r in row["_sub"]]
    return _columns(out, opts)


def _columns(row: Row, opts: TableOptions) -> Row:
    if opts.show:
        keep = set(opts.show) | {"label", "idsubdatatable", "subtable"}
        row = {k: v for k, v in row.items() if k in keep}
    if opts.hide:
        row = {k: v for k, v in row.items() if k not in opts.hide}
    return row


def process_rows(rows: list[Row], opts: TableOptions, default_sort: str) -> list[Row]:
    subtables = _number_subtables(rows)
    if opts.id_subtable is not None:
        rows = subtables.get(opts.id_subtable, [])
    if opts.flat:
        rows = _flatten(rows)
    if opts.pattern:
        try:
            rx = re.compile(opts.pattern, re.IGNORECASE)
        except re.error:
            rx = re.compile(re.escape(opts.pattern), re.IGNORECASE)
        rows = [r for r in rows if rx.search(str(r.get(opts.pattern_column, "")))]
    column = opts.sort_column or (default_sort if opts.flat else None)
    if column:
        desc = opts.sort_desc
        rows = sorted(rows, key=lambda r: -number(r.get(column)) if desc else number(r.get(column)))
    if opts.offset:
        rows = rows[opts.offset :]
    if opts.limit >= 0:
        rows = rows[: opts.limit]
    return [_render(r, opts) for r in rows]


def process_simple(row: Row, opts: TableOptions) -> Any:
    """One-row reports: a single shown column collapses to its bare value."""
    row = _columns(dict(row), opts)
    if len(opts.show) == 1:
        return row.get(opts.show[0], 0)
    return row
