"""API.getReportMetadata: a realistic subset of Matomo's report catalogue."""

from __future__ import annotations

from typing import Any

_VISIT_METRICS = {
    "nb_visits": "Visits",
    "nb_uniq_visitors": "Unique visitors",
    "nb_actions": "Actions",
    "nb_users": "Users",
}
_VISIT_PROCESSED = {
    "nb_actions_per_visit": "Actions per Visit",
    "avg_time_on_site": "Avg. Time on Website",
    "bounce_rate": "Bounce Rate",
    "conversion_rate": "Conversion Rate",
}
_PAGE_METRICS = {"nb_hits": "Pageviews", "nb_visits": "Unique Pageviews"}
_PAGE_PROCESSED = {
    "bounce_rate": "Bounce Rate",
    "avg_time_on_page": "Avg. time on page",
    "exit_rate": "Exit rate",
    "avg_page_load_time": "Avg. page load time",
}
_ENTRY_METRICS = {
    "entry_nb_visits": "Entrances",
    "entry_bounce_count": "Bounces",
}
_EXIT_METRICS = {"exit_nb_visits": "Exits", "nb_hits": "Pageviews", "nb_visits": "Unique Pageviews"}
_EVENT_METRICS = {
    "nb_events": "Events",
    "sum_event_value": "Event value",
    "min_event_value": "Minimum Event value",
    "max_event_value": "Maximum Event value",
    "nb_events_with_value": "Events with a value",
}
_GOAL_METRICS = {
    "nb_conversions": "Conversions",
    "nb_visits_converted": "Visits converted",
    "revenue": "Revenue",
}
_ITEM_METRICS = {"revenue": "Product Revenue", "quantity": "Quantity", "orders": "Unique Purchases"}

# (category, subcategory, name, module, action, dimension, metrics, processed, subtable action)
_REPORTS: list[tuple[Any, ...]] = [
    ("Visitors", "Overview", "Visits Summary", "VisitsSummary", "get", None,
     {**_VISIT_METRICS, "nb_visits_converted": "Visits converted", "bounce_count": "Bounces",
      "sum_visit_length": "Total time spent by visitors (in seconds)",
      "max_actions": "Maximum actions in one visit"}, _VISIT_PROCESSED, None),
    ("Actions", "Page URLs", "Page URLs", "Actions", "getPageUrls", "Page URL",
     _PAGE_METRICS, _PAGE_PROCESSED, "getPageUrls"),
    ("Actions", "Entry pages", "Entry pages", "Actions", "getEntryPageUrls", "Entry Page URL",
     _ENTRY_METRICS, {"bounce_rate": "Bounce Rate"}, "getEntryPageUrls"),
    ("Actions", "Exit pages", "Exit pages", "Actions", "getExitPageUrls", "Exit Page URL",
     _EXIT_METRICS, {"exit_rate": "Exit rate"}, "getExitPageUrls"),
    ("Actions", "Page titles", "Page titles", "Actions", "getPageTitles", "Page Name",
     _PAGE_METRICS, _PAGE_PROCESSED, "getPageTitles"),
    ("Actions", "Entry page titles", "Entry page titles", "Actions", "getEntryPageTitles",
     "Entry Page Title", _ENTRY_METRICS, {"bounce_rate": "Bounce Rate"}, "getEntryPageTitles"),
    ("Actions", "Exit page titles", "Exit page titles", "Actions", "getExitPageTitles",
     "Exit Page Title", _EXIT_METRICS, {"exit_rate": "Exit rate"}, "getExitPageTitles"),
    ("Actions", "Downloads", "Downloads", "Actions", "getDownloads", "Download URL",
     {"nb_hits": "Downloads", "nb_visits": "Unique Downloads"}, {}, "getDownloads"),
    ("Actions", "Outlinks", "Outlinks", "Actions", "getOutlinks", "Outlink URL",
     {"nb_hits": "Clicks", "nb_visits": "Unique Clicks"}, {}, "getOutlinks"),
    ("Actions", "Site Search", "Site Search Keywords", "Actions", "getSiteSearchKeywords",
     "Keyword (Site Search)", {"nb_visits": "Searches"}, {"exit_rate": "% Search Exits"}, None),
    ("Referrers", "All Channels", "Channel Type", "Referrers", "getReferrerType", "Channel Type",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Referrers", "All Channels", "Referrers", "Referrers", "getAll", "Referrer",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Referrers", "Websites", "Websites", "Referrers", "getWebsites", "Website",
     _VISIT_METRICS, _VISIT_PROCESSED, "getUrlsFromWebsiteId"),
    ("Referrers", "Search Engines & Keywords", "Search Engines", "Referrers",
     "getSearchEngines", "Search Engine", _VISIT_METRICS, _VISIT_PROCESSED,
     "getKeywordsFromSearchEngineId"),
    ("Referrers", "Search Engines & Keywords", "Keywords", "Referrers", "getKeywords",
     "Keyword", _VISIT_METRICS, _VISIT_PROCESSED, "getSearchEnginesFromKeywordId"),
    ("Referrers", "Social Networks", "Social Networks", "Referrers", "getSocials",
     "Social Network", _VISIT_METRICS, _VISIT_PROCESSED, "getUrlsForSocial"),
    ("Acquisition", "Campaigns", "Campaigns", "Referrers", "getCampaigns", "Campaign",
     _VISIT_METRICS, _VISIT_PROCESSED, "getKeywordsFromCampaignId"),
    ("Events", "Events", "Event Categories", "Events", "getCategory", "Event Category",
     _EVENT_METRICS, {"avg_event_value": "Average Event value"}, "getActionFromCategoryId"),
    ("Events", "Events", "Event Actions", "Events", "getAction", "Event Action",
     _EVENT_METRICS, {"avg_event_value": "Average Event value"}, "getNameFromActionId"),
    ("Events", "Events", "Event Names", "Events", "getName", "Event Name",
     _EVENT_METRICS, {"avg_event_value": "Average Event value"}, "getActionFromNameId"),
    ("Goals", "Overview", "Goals", "Goals", "get", None, _GOAL_METRICS,
     {"conversion_rate": "Conversion Rate"}, None),
    ("Goals", "Ecommerce", "Product SKU", "Goals", "getItemsSku", "Product SKU",
     _ITEM_METRICS, {"avg_price": "Average Price", "avg_quantity": "Average Quantity",
                     "conversion_rate": "Product Conversion Rate"}, None),
    ("Goals", "Ecommerce", "Product Name", "Goals", "getItemsName", "Product Name",
     _ITEM_METRICS, {"avg_price": "Average Price"}, None),
    ("Goals", "Ecommerce", "Product Category", "Goals", "getItemsCategory", "Product Category",
     _ITEM_METRICS, {"avg_price": "Average Price"}, None),
    ("Goals", "Goals", "Days to Conversion", "Goals", "getDaysToConversion",
     "Days to Conversion", {"nb_conversions": "Conversions"}, {}, None),
    ("Visitors", "Locations", "Country", "UserCountry", "getCountry", "Country",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Locations", "Continent", "UserCountry", "getContinent", "Continent",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Locations", "Region", "UserCountry", "getRegion", "Region",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Locations", "City", "UserCountry", "getCity", "City",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Devices", "Device type", "DevicesDetection", "getType", "Device type",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Devices", "Device brand", "DevicesDetection", "getBrand", "Device brand",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Devices", "Device model", "DevicesDetection", "getModel", "Device model",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Software", "Browsers", "DevicesDetection", "getBrowsers", "Browser",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Software", "Browser version", "DevicesDetection", "getBrowserVersions",
     "Browser version", _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Software", "Operating System families", "DevicesDetection", "getOsFamilies",
     "Operating System family", _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Software", "Operating System versions", "DevicesDetection", "getOsVersions",
     "Operating System Version", _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Engagement", "Returning Visits", "VisitFrequency", "get", None,
     {"nb_visits_returning": "Returning Visits",
      "nb_actions_returning": "Actions by Returning Visits"},
     {}, None),
    ("Visitors", "Times", "Visits per local time", "VisitTime",
     "getVisitInformationPerLocalTime", "Local time", _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Software", "Screen Resolution", "Resolution", "getResolution", "Resolution",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
    ("Visitors", "Locations", "Browser language", "UserLanguage", "getLanguage", "Language",
     _VISIT_METRICS, _VISIT_PROCESSED, None),
]  # fmt: skip


def report_metadata(idsite: int, period: str, date: str) -> list[dict[str, Any]]:
    reports = []
    for order, row in enumerate(_REPORTS, start=1):
        category, sub, name, module, action, dimension, metrics, processed, subtable = row
        graph = (
            f"index.php?module=API&method=ImageGraph.get&idSite={idsite}&apiModule={module}"
            f"&apiAction={action}&period={period}&date={date}"
        )
        report: dict[str, Any] = {
            "category": category,
            "subcategory": sub,
            "name": name,
            "module": module,
            "action": action,
        }
        if dimension:
            report["dimension"] = dimension
        report.update(
            metrics=dict(metrics),
            metricsDocumentation={k: f"The number of {v.lower()}." for k, v in metrics.items()},
            processedMetrics=dict(processed),
            imageGraphUrl=graph,
            imageGraphEvolutionUrl=graph.replace(
                f"period={period}&date={date}", "period=day&date=last30"
            ),
            uniqueId=f"{module}_{action}",
            order=order,
        )
        if subtable:
            report["actionToLoadSubTables"] = subtable
        reports.append(report)
    return reports


def report_methods() -> list[str]:
    return [f"{r[3]}.{r[4]}" for r in _REPORTS]
