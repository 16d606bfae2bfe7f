"""Report methods and Live.getLastVisitsDetails: sites x periods x filters, in Matomo's shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakematomo import dimensions
from tests.fakematomo import reports as r
from tests.fakematomo.call import Call
from tests.fakematomo.metadata import report_methods
from tests.fakematomo.periods import Span, resolve
from tests.fakematomo.render import Keyed
from tests.fakematomo.reports import ReportContext
from tests.fakematomo.segments import filter_visits
from tests.fakematomo.tables import TableOptions, process_rows, process_simple
from tests.fakematomo.visits import Visit

Builder = Callable[[list[Visit], ReportContext], Any]

# method -> (simple one-row report?, builder, default sort column)
REPORTS: dict[str, tuple[bool, Builder, str]] = {
    "VisitsSummary.get": (True, r.visits_summary, ""),
    "Goals.get": (True, r.goals_get, ""),
    "Actions.getPageUrls": (False, lambda v, c: r.pages(v, c, "url"), "nb_visits"),
    "Actions.getEntryPageUrls": (False, lambda v, c: r.pages(v, c, "entry"), "entry_nb_visits"),
    "Actions.getExitPageUrls": (False, lambda v, c: r.pages(v, c, "exit"), "exit_nb_visits"),
    "Actions.getPageTitles": (False, lambda v, c: r.pages(v, c, "title"), "nb_visits"),
    "Events.getCategory": (False, lambda v, c: r.events(v, c, "category", "action"), "nb_events"),
    "Events.getAction": (False, lambda v, c: r.events(v, c, "action", "name"), "nb_events"),
    "Events.getName": (False, lambda v, c: r.events(v, c, "name", "action"), "nb_events"),
    "Referrers.getReferrerType": (False, r.referrer_types, "nb_visits"),
    "Referrers.getWebsites": (False, r.websites, "nb_visits"),
    "Referrers.getSearchEngines": (False, r.search_engines, "nb_visits"),
    "Referrers.getCampaigns": (False, r.campaigns, "nb_visits"),
    "Goals.getItemsSku": (False, r.items_sku, "revenue"),
    "UserCountry.getCountry": (False, r.countries, "nb_visits"),
    "DevicesDetection.getType": (False, r.device_types, "nb_visits"),
    "DevicesDetection.getBrowsers": (False, r.browsers, "nb_visits"),
    "DevicesDetection.getOsVersions": (False, r.os_versions, "nb_visits"),
}
# Reports in the metadata that the fake does not compute: they validate and answer [].
for _name in report_methods():
    REPORTS.setdefault(_name, (False, lambda v, c: [], "nb_visits"))
REPORT_PARAMS = ("idSite", "period", "date")


def _in_span(visits: list[Visit], span: Span) -> list[Visit]:
    return [v for v in visits if span.start <= v.day <= span.end]


def _table(
    method: str, visits: list[Visit], ctx: ReportContext, opts: TableOptions, in_map: bool
) -> Any:
    simple, builder, sort = REPORTS[method]
    if simple:
        if not visits and in_map:
            return []  # an empty period inside a multi-period answer is [], not zeros
        value = process_simple(builder(visits, ctx), opts)
        if not isinstance(value, dict):
            return value if in_map else {"value": value}
        return [value] if opts.flat else value
    return process_rows(builder(visits, ctx), opts, sort)


def report(call: Call, method: str) -> Any:
    ids, multi_site = call.sites(call.require("idSite"))
    period, date = call.require("period"), call.require("date")
    opts = TableOptions.from_params(call.params)
    segment = call.param("segment")
    all_visits = call.visits.visits()
    results: dict[str, Any] = {}
    for idsite in ids:
        spans, keyed = resolve(period, date, call.today(idsite))
        ctx = ReportContext(
            call.state.sites[idsite],
            period,
            raw_metrics=call.param("format_metrics") == "0",
            id_goal=call.param("idGoal") or None,
        )
        configured = dimensions.configured(call.state, idsite)
        visits = filter_visits(all_visits.get(idsite, []), segment, configured)
        if keyed:
            results[str(idsite)] = Keyed(
                "date",
                {s.label: _table(method, _in_span(visits, s), ctx, opts, True) for s in spans},
            )
        else:
            results[str(idsite)] = _table(method, _in_span(visits, spans[0]), ctx, opts, False)
    if multi_site:
        return Keyed("idSite", results)
    return results[str(ids[0])]
