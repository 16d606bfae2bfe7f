"""`matokit track ...` in-process against the fake Matomo: validation, exit codes, outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from matokit.journal import Journal
from tests.clirunner import invoke
from tests.conftest import SENTINEL_TOKEN
from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_matomo: FakeMatomo) -> FakeMatomo:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    return fake_matomo


def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".local" / "share" / "matokit" / "default" / "journal.sqlite"


def queued(tmp_path: Path) -> int:
    path = journal_path(tmp_path)
    if not path.exists():
        return 0
    with Journal(path) as journal:
        return journal.stats().queued


def tracking_requests(fake: FakeMatomo) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("matomo.php"))


EVENT = ("track", "event", "--category", "shop", "--action", "buy")


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("track", "event", "--category", " ", "--action", "a"), "category"),
        ((*EVENT, "--visitor-id", "xyz"), "visitor_id"),
        ((*EVENT, "--value", "lots"), "value"),
        ((*EVENT, "--dimension", "gold"), "dimension"),
        ((*EVENT, "--param", "token_auth=x"), "token_auth"),
        ((*EVENT, "--at", "2999-01-01T00:00:00Z"), "at"),
        (("track", "pageview", "--url", "not a url"), "url"),
        (("track", "goal", "--goal", "0"), "goal"),
        (("track", "order", "--order-id", "o1", "--revenue", "9", "--item", "a,b"), "items[0]"),
    ],
)
def test_invalid_hit_flag_is_a_usage_error_naming_the_field(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, args: tuple[str, ...], field: str
) -> None:
    # A value given on the command line is a usage error (2); the same in an import line is 65.
    result = invoke(capsys, *args)
    assert result.code == 2, result
    assert field in result.stderr, result
    assert env.requests == []


def test_missing_required_option_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    result = invoke(capsys, "track", "event", "--category", "c")
    assert result.code == 2, result
    assert "--action" in result.stderr


def test_no_site_exits_78(capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch):
    monkeypatch.delenv("MATOMO_SITE_ID")
    result = invoke(capsys, *EVENT)
    assert result.code == 78, result
    assert "site" in result.stderr


def test_no_url_exits_78_unless_queued_or_dry_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    assert invoke(capsys, *EVENT).code == 78
    assert queued(tmp_path) == 0
    queued_run = invoke(capsys, *EVENT, "--queue")
    assert queued_run.code == 0, queued_run
    assert queued(tmp_path) == 1
    assert invoke(capsys, *EVENT, "--dry-run").code == 0


# --- sending -------------------------------------------------------------------------------


def test_event_is_delivered_now(capsys: pytest.CaptureFixture[str], env: FakeMatomo) -> None:
    result = invoke(capsys, *EVENT, "--name", "n", "--value", "3.5", "--format", "json")
    assert result.code == 0, result
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "delivered"
    (stored,) = env.hits
    assert (stored["e_c"], stored["e_a"], stored["e_n"], stored["e_v"]) == (
        "shop",
        "buy",
        "n",
        "3.5",
    )


def test_pageview_url_is_the_page_and_global_url_is_matomo(
    capsys: pytest.CaptureFixture[str], fake_matomo: FakeMatomo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    result = invoke(
        capsys,
        "--url",
        fake_matomo.url,
        "track",
        "pageview",
        "--url",
        "https://example.org/page",
        "--title",
        "Page",
    )
    assert result.code == 0, result
    assert fake_matomo.hits[0]["url"] == "https://example.org/page"
    assert fake_matomo.hits[0]["action_name"] == "Page"


def test_order_goal_dimensions_and_params_reach_matomo(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    order = invoke(
        capsys,
        "track",
        "order",
        "--order-id",
        "A-1",
        "--revenue",
        "59.8",
        "--item",
        'SKU1,"Shoe, red",49.9,1',
        "--item",
        "SKU2,Socks,9.9,1",
        "--dimension",
        "1=gold",
        "--param",
        "lang=de",
        "--visitor-id",
        "0123456789abcdef",
        "--user-id",
        "u-1",
    )
    assert order.code == 0, order
    goal = invoke(capsys, "track", "goal", "--goal", "1", "--revenue", "5", "--site", "2")
    assert goal.code == 0, goal
    first, second = env.hits
    assert json.loads(first["ec_items"])[0][:2] == ["SKU1", "Shoe, red"]
    assert (first["dimension1"], first["lang"], first["cid"], first["uid"]) == (
        "gold",
        "de",
        "0123456789abcdef",
        "u-1",
    )
    assert (second["idsite"], second["idgoal"]) == ("2", "1")


def test_idempotency_key_makes_a_retry_a_duplicate(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    first = invoke(capsys, *EVENT, "--idempotency-key", "order-42")
    again = invoke(capsys, *EVENT, "--idempotency-key", "order-42", "--format", "json")
    assert (first.code, again.code) == (0, 0), again
    assert json.loads(again.stdout)["state"] == "duplicate"
    assert "duplicate" in again.stderr
    assert len(env.hits) == 1
    assert tracking_requests(env) == 1


def test_queued_key_is_a_duplicate_too(capsys: pytest.CaptureFixture[str], env: FakeMatomo) -> None:
    assert invoke(capsys, *EVENT, "--queue", "--idempotency-key", "k").code == 0
    again = invoke(capsys, *EVENT, "--idempotency-key", "k")
    assert again.code == 0 and "duplicate" in again.stderr
    assert env.requests == []


def test_matomo_unavailable_queues_the_hit_and_exits_75(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    env.add_fault(Fault(endpoint="tracking", status=503, retry_after="30"))
    result = invoke(capsys, *EVENT, "--format", "json")
    assert result.code == 75, result
    assert json.loads(result.stdout)["state"] == "queued"
    assert "queue flush" in result.stderr
    assert queued(tmp_path) == 1
    env.clear_faults()
    # The 503's Retry-After paused the profile for 30 s: stand in for its end.
    (journal_path(tmp_path).parent / "server-pause.json").unlink()
    assert invoke(capsys, "queue", "flush", "--all").code == 0
    assert len(env.hits) == 1


def test_track_during_matomo_pause_queues_without_a_request_and_exits_75(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    env.add_fault(Fault(endpoint="tracking", status=429, retry_after="120", times=1))
    assert invoke(capsys, *EVENT).code == 75
    sent = tracking_requests(env)
    result = invoke(capsys, *EVENT, "--format", "json")
    assert result.code == 75, result
    assert json.loads(result.stdout)["state"] == "queued"
    assert "no requests before" in result.stderr
    assert tracking_requests(env) == sent  # the server asked for a pause: nothing was sent
    assert queued(tmp_path) == 2


def test_connection_refused_queues_the_hit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MATOMO_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    result = invoke(capsys, *EVENT)
    assert result.code == 75, result
    assert "Cannot connect" in result.stderr
    assert queued(tmp_path) == 1


def test_matomo_rejecting_the_hit_exits_65_and_queues_nothing(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    result = invoke(capsys, "track", "goal", "--goal", "99", "--format", "json")
    assert result.code == 65, result
    assert json.loads(result.stdout)["state"] == "rejected"
    assert "rejected" in result.stderr
    assert queued(tmp_path) == 0


def test_no_matomo_at_the_url_queues_the_hit_and_exits_78_naming_the_url(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    env.add_fault(Fault(endpoint="tracking", status=404))
    result = invoke(capsys, *EVENT)
    assert result.code == 78, result
    assert "No Matomo tracker at this URL" in result.stderr
    assert "Fix the Matomo URL (MATOMO_URL or --url), then run `matokit queue flush`" in (
        result.stderr
    )
    assert queued(tmp_path) == 1


def test_stale_token_with_an_old_hit_queues_it_and_exits_77(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    old = str(int(time.time()) - 2 * 86400)
    result = invoke(capsys, *EVENT, "--at", old)
    assert result.code == 77, result
    assert "token" in result.stderr
    assert queued(tmp_path) == 1
    assert tracking_requests(env) == 0
    again = invoke(capsys, *EVENT, "--at", old)
    assert again.code == 77  # cool-down: refused locally
    assert len([r for r in env.requests if not r.path.endswith("matomo.php")]) == 1
    assert SENTINEL_TOKEN not in result.stdout + result.stderr + again.stderr


def test_view_only_token_with_an_old_hit_exits_77(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch
) -> None:
    monkeypatch.setenv("MATOMO_TOKEN", VIEW_TOKEN)
    result = invoke(capsys, *EVENT, "--at", str(int(time.time()) - 2 * 86400))
    assert result.code == 77, result
    assert "admin access on site 1" in result.stderr


def test_recent_hit_needs_no_token(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch
) -> None:
    monkeypatch.delenv("MATOMO_TOKEN")
    assert invoke(capsys, *EVENT).code == 0
    assert len(env.hits) == 1


def test_dry_run_prints_the_request_with_the_token_masked(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch
) -> None:
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    result = invoke(capsys, *EVENT, "--dry-run")
    assert result.code == 0, result
    assert result.stdout.startswith(f"POST {env.url}matomo.php")
    assert '"token_auth": "***"' in result.stdout
    assert "e_c=shop" in result.stdout
    assert SENTINEL_TOKEN not in result.stdout + result.stderr
    assert env.requests == []


def test_dry_run_format_json_prints_the_request_as_json_with_the_token_masked(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch
) -> None:
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    result = invoke(capsys, *EVENT, "--dry-run", "--format", "json")
    assert result.code == 0, result
    view = json.loads(result.stdout)
    request = view["request"]
    assert view["dry_run"] is True
    assert (request["method"], request["url"]) == ("POST", f"{env.url}matomo.php")
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"]["token_auth"] == "***"
    (hit,) = request["body"]["requests"]
    assert "e_c=shop" in hit
    assert SENTINEL_TOKEN not in result.stdout + result.stderr
    assert env.requests == []


def test_queue_only_journals(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    result = invoke(capsys, *EVENT, "--queue", "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["state"] == "queued"
    assert env.requests == []
    assert queued(tmp_path) == 1


# --- local storage -------------------------------------------------------------------------


def test_unwritable_data_dir_exits_74_and_says_nothing_was_queued(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MATOKIT_DATA_DIR", str(blocker / "data"))
    queued_run = invoke(capsys, *EVENT, "--queue")
    assert queued_run.code == 74, queued_run
    assert "queued" not in queued_run.stderr.replace("NOT queued", "")
    env.add_fault(Fault(endpoint="tracking", status=503))
    failed = invoke(capsys, *EVENT)
    assert failed.code == 74, failed
    assert "NOT delivered" in failed.stderr and "NOT queued" in failed.stderr


def test_a_hit_neither_delivered_nor_queued_is_printed_as_one_importable_json_line(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, tmp_path: Path
) -> None:
    from matokit.hits import hit_from_record

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MATOKIT_DATA_DIR", str(blocker / "data"))
    queued_run = invoke(capsys, *EVENT, "--queue", "--idempotency-key", "order-7")
    env.add_fault(Fault(endpoint="tracking", status=503))
    failed = invoke(capsys, *EVENT, "--visitor-id", "0123456789abcdef")
    for run, kept in ((queued_run, "NOT queued"), (failed, "NOT delivered")):
        assert run.code == 74, run
        lines = [json.loads(t) for t in run.stderr.splitlines() if t.startswith("{")]
        assert len(lines) == 1 and kept in run.stderr and "track import" in run.stderr, run
        (line,) = lines
        assert set(line) == {"id", "params"} and line["params"]["e_c"] == "shop"
        assert SENTINEL_TOKEN not in run.stderr
        hit = hit_from_record(line, site_id=None, now=time.time())  # `track import` takes it
        assert hit.params["e_a"] == "buy"
    assert json.loads(queued_run.stderr.splitlines()[0])["id"] == "order-7"


def test_corrupt_journal_exits_74_and_is_left_untouched(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    path = journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage, not a journal" * 10)
    before = path.read_bytes()
    result = invoke(capsys, *EVENT, "--queue")
    assert result.code == 74, result
    assert "not a MatoKit journal" in result.stderr or "damaged" in result.stderr
    assert path.read_bytes() == before


# --- import --------------------------------------------------------------------------------


def lines(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


GOOD = [{"type": "event", "category": "c", "action": f"a{i}", "id": f"id-{i}"} for i in range(5)]


def test_import_sends_everything_and_a_rerun_sends_nothing(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    source = tmp_path / "hits.jsonl"
    source.write_text(lines(*GOOD))
    first = invoke(capsys, "track", "import", str(source), "--format", "json")
    assert first.code == 0, first
    summary = json.loads(first.stdout)
    assert (summary["read"], summary["sent"], summary["queued"]) == (5, 5, 0)
    again = invoke(capsys, "track", "import", str(source), "--format", "json")
    assert again.code == 0, again
    assert json.loads(again.stdout)["duplicates"] == 5
    assert len(env.hits) == 5
    assert "skipped as duplicates" in again.stderr


def test_import_from_stdin_reports_invalid_lines_and_exits_65(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    text = lines(GOOD[0], "{oops", {"type": "event", "category": "c"}, GOOD[1])
    result = invoke(capsys, "track", "import", "-", stdin=text)
    assert result.code == 65, result
    assert "line 2:" in result.stderr and "line 3:" in result.stderr
    assert "2 invalid" in result.stderr
    assert len(env.hits) == 2


def test_strict_import_sends_nothing_when_a_line_is_invalid(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    text = lines(GOOD[0], {"type": "nope"})
    result = invoke(capsys, "track", "import", "-", "--strict", stdin=text)
    assert result.code == 65, result
    assert "line 2:" in result.stderr
    assert env.requests == []
    assert queued(tmp_path) == 0


def test_import_with_matomo_down_queues_and_exits_75(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    env.add_fault(Fault(endpoint="tracking", status=503))
    result = invoke(capsys, "track", "import", "-", stdin=lines(*GOOD))
    assert result.code == 75, result
    assert queued(tmp_path) == 5
    assert "queue flush" in result.stderr


def test_import_queue_only_journals(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    result = invoke(capsys, "track", "import", "-", "--queue", stdin=lines(*GOOD))
    assert result.code == 0, result
    assert env.requests == []
    assert queued(tmp_path) == 5


def test_import_summary_counts_the_files_lines_and_older_hits_on_their_own_line(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    older = invoke(capsys, *EVENT, "--queue")
    assert older.code == 0, older
    result = invoke(capsys, "track", "import", "-", "--format", "json", stdin=lines("{oops"))
    assert result.code == 65, result
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["invalid"], summary["sent"], summary["queued"]) == (
        1,
        1,
        0,
        0,
    )
    assert summary["older"]["sent"] == 1 and summary["older"]["queued"] == 0
    assert "matokit: import: 1 read, 0 sent, 0 queued" in result.stderr
    assert "the flush also sent 1 older queued hit(s)" in result.stderr
    assert len(env.hits) == 1


def test_import_queue_reports_the_files_hits_not_the_journal_depth(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, tmp_path: Path
) -> None:
    for _ in range(3):
        assert invoke(capsys, *EVENT, "--queue").code == 0
    result = invoke(
        capsys, "track", "import", "-", "--queue", "--format", "json", stdin=lines(*GOOD[:2])
    )
    assert result.code == 0, result
    summary = json.loads(result.stdout)
    assert (summary["journaled"], summary["queued"], summary["sent"]) == (2, 2, 0)
    assert queued(tmp_path) == 5


def test_import_with_matomo_down_counts_only_its_own_hits_as_queued(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    assert invoke(capsys, *EVENT, "--queue").code == 0
    env.add_fault(Fault(endpoint="tracking", status=503))
    result = invoke(capsys, "track", "import", "-", "--format", "json", stdin=lines(*GOOD[:2]))
    assert result.code == 75, result
    summary = json.loads(result.stdout)
    assert (summary["queued"], summary["sent"]) == (2, 0)
    assert summary["older"]["queued"] == 1


def test_import_of_a_missing_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    result = invoke(capsys, "track", "import", "/nonexistent/hits.jsonl")
    assert result.code == 2, result
    assert "cannot read" in result.stderr


# --- how the hit commands are declared -----------------------------------------------------------

HIT_COMMANDS = ("pageview", "event", "goal", "order")
COMMON_OPTIONS = [
    "site",
    "visitor_id",
    "user_id",
    "at",
    "dimension",
    "param",
    "idempotency_key",
    "queue",
    "dry_run",
    "fmt",
]


def test_hit_commands_are_plain_functions_typer_reads_as_written():
    """No synthesized __signature__/__annotations__: what Typer introspects is the def itself."""
    import inspect

    from matokit.cli import track

    callbacks = {info.name: info.callback for info in track.app.registered_commands}
    for name in HIT_COMMANDS:
        callback = callbacks[name]
        assert callback is not None and callback.__name__ == name
        assert "__signature__" not in vars(callback), name
        code = callback.__code__
        written = list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
        assert list(inspect.signature(callback).parameters) == written, name
        assert set(callback.__annotations__) == {*written, "return"}, name
        assert written[0] == "ctx" and written[-len(COMMON_OPTIONS) :] == COMMON_OPTIONS, name


def test_hit_commands_share_the_common_options_exactly(capsys):
    manifest = json.loads(invoke(capsys, "describe").stdout)
    by_name = {c["name"]: c for c in manifest["commands"]}
    tails = [by_name[f"track {name}"]["params"][-len(COMMON_OPTIONS) :] for name in HIT_COMMANDS]
    assert [p["name"] for p in tails[0]] == COMMON_OPTIONS
    assert all(tail == tails[0] for tail in tails)
