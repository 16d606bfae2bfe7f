"""The options of `matokit [GLOBAL] report show NAME`, as data for the lean cache hit.

GENERATED from the Click command; do not edit. Regenerate with
`python -m matokit.cli.regenerate > matokit/cli/report_options.py`.
`report_show.parse_argv` reads it so that it never imports typer or click;
tests/test_cli_report.py fails when it no longer matches the CLI.

Each parameter: name -> (option strings, takes a value, type).
"""

from __future__ import annotations

Param = tuple[tuple[str, ...], bool, str]

GLOBAL: dict[str, Param] = {
    "profile": (("--profile",), True, "string"),
    "url": (("--url",), True, "string"),
    "site": (("--site",), True, "string"),
    "token_file": (("--token-file",), True, "string"),
    "config_path": (("--config",), True, "string"),
    "timeout": (("--timeout",), True, "string"),
    "log_format": (("--log-format",), True, "string"),
    "verbose": (("--verbose", "-v"), False, "boolean"),
    "quiet": (("--quiet", "-q"), False, "boolean"),
    "debug": (("--debug",), False, "boolean"),
    "version": (("--version",), False, "boolean"),
}

REPORT_COMMANDS = ("list", "show", "summary")
SHOW_ARGUMENTS = ("name",)

SHOW: dict[str, Param] = {
    "period": (("--period", "-p"), True, "string"),
    "date": (("--date", "-d"), True, "string"),
    "segment": (("--segment",), True, "string"),
    "limit": (("--limit", "-n"), True, "integer"),
    "columns": (("--columns", "-c"), True, "string"),
    "site": (("--site",), True, "integer"),
    "fmt": (("--format", "-f"), True, "string"),
    "chart": (("--chart",), False, "boolean"),
    "no_cache": (("--no-cache",), False, "boolean"),
    "refresh": (("--refresh",), False, "boolean"),
    "csv_safe": (("--csv-safe",), False, "boolean"),
}
