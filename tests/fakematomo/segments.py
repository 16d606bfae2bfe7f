"""A small subset of Matomo's segment language, applied to whole visits.

`a==1,b==2;c!=3` means (a==1 OR b==2) AND c!=3. Values are URL-encoded inside the parameter.
A visit matches a condition when any of its values for that dimension matches: like Matomo's
SQL, an action-scope condition looks at every action of the visit, however many there are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Sequence
from urllib.parse import unquote

from tests.fakematomo.errors import ApiError
from tests.fakematomo.visits import Visit

_CONDITION = re.compile(r"([A-Za-z][A-Za-z0-9_.]*)(==|!=|<=|>=|=@|!@|=\^|=\$|<|>)(.*)", re.DOTALL)
_DIMENSION = re.compile(r"dimension(\d+)")


def _hit_values(visit: Visit, param: str, kinds: tuple[str, ...] | None = None) -> list[str]:
    return [str(p.get(param, "")) for _ts, p, kind in visit.hits if kinds is None or kind in kinds]


def _first_last(visit: Visit, last: bool) -> list[str]:
    views = _hit_values(visit, "url", ("pageview",))
    return [views[-1 if last else 0]] if views else []


FIELDS: dict[str, Callable[[Visit], list[str]]] = {
    "visitorId": lambda v: [v.visitor_id],
    "userId": lambda v: [v.user_id or ""],
    "visitIp": lambda v: [v.ip],
    "idVisit": lambda v: [str(v.idvisit)],
    "visitCount": lambda v: [str(v.visit_count)],
    "actions": lambda v: [str(v.nb_actions)],
    "visitConverted": lambda v: [str(int(v.converted))],
    "pageUrl": lambda v: _hit_values(v, "url", ("pageview",)),
    "pageTitle": lambda v: _hit_values(v, "action_name", ("pageview",)),
    "entryPageUrl": lambda v: _first_last(v, False),
    "exitPageUrl": lambda v: _first_last(v, True),
    "eventCategory": lambda v: _hit_values(v, "e_c", ("event",)),
    "eventAction": lambda v: _hit_values(v, "e_a", ("event",)),
    "eventName": lambda v: _hit_values(v, "e_n", ("event",)),
    "referrerType": lambda v: [v.referrer.kind],
    "referrerName": lambda v: [v.referrer.name],
    "referrerKeyword": lambda v: [v.referrer.keyword],
    "countryCode": lambda v: [v.country],
    "deviceType": lambda v: [v.device.type.lower() if v.device else "unknown"],
    "browserCode": lambda v: [v.device.browser_code if v.device else "UNK"],
    "operatingSystemCode": lambda v: [v.device.os_code if v.device else "UNK"],
}


def _values(name: str, visit: Visit) -> list[str]:
    getter = FIELDS.get(name)
    if getter is not None:
        return getter(visit)
    m = _DIMENSION.fullmatch(name)
    if m:
        return visit.dims.get(int(m[1]), [])
    raise ApiError(f"Segment '{name}' is not a supported segment.")


def _test(op: str, value: str, wanted: str) -> bool:
    if op in ("<", ">", "<=", ">="):
        try:
            a, b = float(value), float(wanted)
        except ValueError:
            return False
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
    if op in ("==", "!="):
        return value == wanted
    if op in ("=@", "!@"):
        return wanted.lower() in value.lower()
    if op == "=^":
        return value.startswith(wanted)
    return value.endswith(wanted)


Condition = tuple[str, str, str]


def parse(segment: str, dimensions: Container[int] = ()) -> list[list[Condition]]:
    """AND-list of OR-lists of (name, operator, value); dimensionN must be configured."""
    clauses: list[list[Condition]] = []
    for and_part in segment.split(";"):
        options: list[Condition] = []
        for or_part in and_part.split(","):
            m = _CONDITION.fullmatch(or_part.strip())
            if not m:
                raise ApiError(f"The segment condition '{or_part}' is not valid.")
            options.append((m[1], m[2], unquote(m[3])))
        clauses.append(options)
    for options in clauses:
        for name, _op, _value in options:
            m = _DIMENSION.fullmatch(name)
            if name not in FIELDS and not (m and int(m[1]) in dimensions):
                raise ApiError(f"Segment '{name}' is not a supported segment.")
    return clauses


def matches(visit: Visit, clauses: list[list[Condition]]) -> bool:
    return all(any(_matches_one(visit, c) for c in options) for options in clauses)


def _matches_one(visit: Visit, condition: Condition) -> bool:
    name, op, wanted = condition
    if op in ("==", "!=") and (m := _DIMENSION.fullmatch(name)):
        return visit.has_value(int(m[1]), wanted) is (op == "==")
    values = _values(name, visit)
    if op in ("!=", "!@"):
        positive = "==" if op == "!=" else "=@"
        return not any(_test(positive, v, wanted) for v in values)
    return any(_test(op, v, wanted) for v in values)


Lookup = Callable[[int, str], Sequence[Visit]]


def filter_visits(
    visits: list[Visit],
    segment: str,
    dimensions: Container[int] = (),
    lookup: Lookup | None = None,
) -> list[Visit]:
    """The visits matching `segment`, in their order.

    lookup(iddimension, value) -> the visits with that value: when given, a clause made only
    of `dimensionN==value` conditions narrows the candidates through it instead of a scan.
    """
    if not segment:
        return visits
    clauses = parse(segment, dimensions)
    candidates = _candidates(clauses, lookup) if lookup is not None else None
    if candidates is not None:
        visits = [v for v in visits if id(v) in candidates]
    return [v for v in visits if matches(v, clauses)]


def _candidates(clauses: list[list[Condition]], lookup: Lookup) -> set[int] | None:
    """Ids of the visits that can match, or None when no clause narrows them."""
    narrowed: set[int] | None = None
    for options in clauses:
        keys = [
            (int(m[1]), wanted)
            for name, op, wanted in options
            if op == "==" and (m := _DIMENSION.fullmatch(name))
        ]
        if len(keys) != len(options):
            continue
        found = {id(v) for iddim, wanted in keys for v in lookup(iddim, wanted)}
        narrowed = found if narrowed is None else narrowed & found
    return narrowed
