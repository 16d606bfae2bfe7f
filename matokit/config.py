"""Settings resolution: flag > environment > `.env` > config file profile > default.

This module is the only reader of configuration: the environment, `.env` and the config file
(a test scans the package for other readers). `resolve()` keeps, for every value, the layer it
came from, so `matokit config show` can explain the result; `locate()` and `resolve_logging()`
answer the two questions asked before a profile can be resolved. The token itself is never
read here: `Settings.token()` loads it from its source on first use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from matokit.durations import parse_duration
from matokit.errors import ConfigError, InsecureURLError, MatokitError, UsageError
from matokit.redact import register_url_credentials
from matokit.secrets import TokenSource, check_private_file, read_bearer_token
from matokit.urls import is_loopback, normalize_url

APP_NAME = "matokit"
DEFAULT_PROFILE = "default"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Source labels shown by `config show`.
FLAG, ENV, DOTENV, FILE, DEFAULT = "flag", "env", ".env", "config file", "default"

# Options resolved beside KEYS (they choose the file, the profile and the token), with the
# variable that can replace each.
CONFIG_OPTION = ("--config", "MATOKIT_CONFIG")
PROFILE_OPTION = ("--profile", "MATOKIT_PROFILE")
TOKEN_FILE_OPTION = ("--token-file", "MATOMO_TOKEN_FILE")
# The bearer token of `matokit tools serve` (not a profile setting: it guards the service,
# not Matomo), and the file that can hold it instead.
TOOLS_TOKEN_ENV = "MATOKIT_TOOLS_TOKEN"
TOOLS_TOKEN_FILE_OPTION = ("--bearer-token-file", "MATOKIT_TOOLS_TOKEN_FILE")

LOG_LEVELS = ("debug", "info", "warning", "error")
# The flags that set log_level, strongest first (--debug wins over --quiet over --verbose).
LEVEL_FLAGS = (("--debug", "debug"), ("--quiet", "error"), ("--verbose", "info"))


@dataclass(frozen=True)
class Key:
    """One setting: its profile key, environment variable, CLI flag, parser and default."""

    name: str
    parse: Callable[[Any], Any]
    default: Any = None
    env: str | None = None
    flag: str | None = None
    help: str = ""


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("is not a positive integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("is not a positive integer") from None
    if number < 1:
        raise ValueError("is not a positive integer")
    return number


def _positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("is not a positive number")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("is not a positive number") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("is not a positive number")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("is not a boolean (use true or false)")


def _log_format(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


def _log_level(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError("must be " + ", ".join(LOG_LEVELS[:-1]) + " or " + LOG_LEVELS[-1])
    return text


EXACTLY_ONCE_MODES = ("auto", "on", "off")
# How long an uncertain send is left to settle before its hits are looked up in Matomo.
DEFAULT_SETTLE = 300.0
QUEUEDTRACKING_SETTLE = 1800.0  # QueuedTracking stores hits only when its queue is processed


def _exactly_once(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in EXACTLY_ONCE_MODES:
        raise ValueError("must be auto, on or off")
    return text


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(value: Any) -> str:
    text = str(value).strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
    if scheme != "unix" and not urlsplit(text).hostname:
        raise ValueError("names no host (e.g. redis://127.0.0.1:6379/0)")
    return text


def _redis_prefix(value: Any) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", text):
        raise ValueError("must be 1-64 letters, digits, '_', '.', ':' or '-'")
    return text


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("is not a whole number >= 0")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("is not a whole number >= 0") from None
    if number < 0:
        raise ValueError("is not a whole number >= 0")
    return number


def _concurrency(value: Any) -> str:
    text = str(value).strip().lower()
    if text == "auto":
        return text
    try:
        number = int(text)
    except ValueError:
        raise ValueError("must be auto or a number of lanes from 1 to 32") from None
    if not 1 <= number <= 32:
        raise ValueError("must be auto or a number of lanes from 1 to 32")
    return str(number)


def _payload_bytes(value: Any) -> int:
    number = _positive_int(value)
    if number < 1024:
        raise ValueError("must be at least 1024 bytes")
    return number


def _path(value: Any) -> Path:
    text = str(value).strip()
    if not text:
        raise ValueError("is empty")
    return Path(text).expanduser()


KEYS: tuple[Key, ...] = (
    Key("url", normalize_url, None, "MATOMO_URL", "--url", "Matomo base URL"),
    Key("site_id", _positive_int, None, "MATOMO_SITE_ID", "--site", "default idSite"),
    Key("timeout", _positive_float, 10.0, "MATOKIT_TIMEOUT", "--timeout", "HTTP read timeout (s)"),
    Key("connect_timeout", _positive_float, 5.0, help="HTTP connect timeout (s)"),
    Key("rate_limit", _positive_float, None, "MATOKIT_RATE_LIMIT", help="requests per second"),
    Key("ca_bundle", _path, None, "MATOKIT_CA_BUNDLE", help="CA bundle for TLS verification"),
    Key("allow_insecure_http", _bool, False, help="allow http:// to non-loopback hosts"),
    Key("cache_dir", _path, None, "MATOKIT_CACHE_DIR", help="this profile's cache directory"),
    Key("data_dir", _path, None, "MATOKIT_DATA_DIR", help="this profile's data directory"),
    Key("ttl_today", parse_duration, 300.0, help="cache TTL of periods including today"),
    Key("ttl_past", parse_duration, 86400.0, help="cache TTL of finished periods"),
    Key("token_cooldown", parse_duration, 600.0, help="pause after Matomo rejects the token"),
    Key("token_command_timeout", parse_duration, 10.0, help="time limit of token_command"),
    Key("batch_size", _positive_int, 100, help="hits per bulk request"),
    Key(
        "concurrency",
        _concurrency,
        "auto",
        "MATOKIT_CONCURRENCY",
        help="bulks in flight (lanes by visitor): auto or 1-32",
    ),
    Key("max_payload_bytes", _payload_bytes, 1_000_000, help="largest bulk request body"),
    Key("max_attempts", _positive_int, 20, help="sends before a hit becomes a dead letter"),
    Key("max_age", parse_duration, 7 * 86400.0, help="age at which a queued hit becomes dead"),
    Key("dedup_window", parse_duration, 7 * 86400.0, help="how long delivered keys are kept"),
    Key("queuedtracking", _bool, False, help="add queuedtracking=0 (QueuedTracking plugin)"),
    Key(
        "exactly_once",
        _exactly_once,
        "auto",
        "MATOKIT_EXACTLY_ONCE",
        help="auto|on|off: look up uncertain sends through the matokit_key dimension",
    ),
    Key(
        "settle_time",
        parse_duration,
        None,
        "MATOKIT_SETTLE_TIME",
        help="wait before looking up an uncertain send (default 5m; 30m with queuedtracking)",
    ),
    Key(
        "redis_url",
        _redis_url,
        None,
        "MATOKIT_REDIS_URL",
        help="shared backend (journal, report cache, token memory, pause): redis://, rediss://, unix://",
    ),
    Key("redis_prefix", _redis_prefix, "matokit", help="namespace of the profile's Redis keys"),
    Key("redis_password_file", _path, None, help="file holding the Redis password (0600)"),
    Key(
        "redis_min_replicas",
        _non_negative_int,
        0,
        help="replicas that must hold a journal write before it is acknowledged (WAIT)",
    ),
    Key("log_format", _log_format, "text", "MATOKIT_LOG_FORMAT", "--log-format", "text or json"),
    Key("csv_safe", _bool, False, "MATOKIT_CSV_SAFE", help="defuse formulas in CSV output"),
    Key("log_level", _log_level, "warning", "MATOKIT_LOG_LEVEL", help="debug|info|warning|error"),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}
TOKEN_KEYS = ("token", "token_file", "token_env", "token_command")
PROFILE_KEYS = frozenset(KEYS_BY_NAME) | frozenset(TOKEN_KEYS)


def option_env() -> dict[str, str]:
    """Every global option that a variable can replace, with that variable (for `describe`)."""
    names = dict((CONFIG_OPTION, PROFILE_OPTION, TOKEN_FILE_OPTION))
    names.update({key.flag: key.env for key in KEYS if key.flag and key.env})
    level_env = str(KEYS_BY_NAME["log_level"].env)
    names.update({flag: level_env for flag, _ in LEVEL_FLAGS})
    return names


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The resolved configuration of one profile, with the source of every value.

    One typed field per entry of `KEYS` (same name; `test_config` keeps them in step), built
    by `resolve()` only. `sources` maps each key name (and "profile") to the layer it came from.
    """

    profile: str
    config_path: Path
    config_exists: bool
    sources: Mapping[str, str]
    token_source: TokenSource | None = field(default=None, repr=False)
    # MATOKIT_REDIS_PASSWORD (environment or .env): never shown, never in a file MatoKit writes.
    redis_password_env: str | None = field(default=None, repr=False)
    # One field per KEYS entry, in the same order; the defaults live in KEYS.
    url: str | None
    site_id: int | None
    timeout: float
    connect_timeout: float
    rate_limit: float | None
    ca_bundle: Path | None
    allow_insecure_http: bool
    cache_dir: Path  # never None: resolve() fills in the platform directory
    data_dir: Path  # never None: resolve() fills in the platform directory
    ttl_today: float
    ttl_past: float
    token_cooldown: float
    token_command_timeout: float
    batch_size: int
    concurrency: str
    max_payload_bytes: int
    max_attempts: int
    max_age: float
    dedup_window: float
    queuedtracking: bool
    exactly_once: str
    settle_time: float | None
    redis_url: str | None
    redis_prefix: str
    redis_password_file: Path | None
    redis_min_replicas: int
    log_format: str
    csv_safe: bool
    log_level: str

    @property
    def journal_path(self) -> Path:
        """This profile's retry journal."""
        return self.data_dir / "journal.sqlite"

    @property
    def cache_path(self) -> Path:
        """This profile's report cache database."""
        return self.cache_dir / "http-cache.sqlite"

    @property
    def token_memory_path(self) -> Path:
        """Where a rejected token's hash is remembered (lockout safety)."""
        return self.data_dir / "rejected-token.json"

    @property
    def redis_namespace(self) -> str:
        """The prefix of every Redis key of this profile, with one hash tag per profile so all
        of them live in one Redis Cluster slot: `matokit:{default}`."""
        return f"{self.redis_prefix}:{{{self.profile}}}"

    def redis_password(self) -> str | None:
        """The Redis password from MATOKIT_REDIS_PASSWORD or `redis_password_file` (None: none,
        or the one in `redis_url`)."""
        if self.redis_password_env:
            return self.redis_password_env
        path = self.redis_password_file
        if path is None:
            return None
        check_private_file(path, what="Redis password file")
        try:
            password = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"Cannot read the Redis password file {path}: {exc}",
                hint="Check redis_password_file in the profile, and the file's permissions.",
            ) from None
        if not password:
            raise ConfigError(f"The Redis password file {path} is empty.")
        from matokit.redact import register_secret

        register_secret(password)
        return password

    @property
    def lanes(self) -> int | None:
        """The number of lanes a flush runs (None: `auto`)."""
        return None if self.concurrency == "auto" else int(self.concurrency)

    @property
    def settle(self) -> float:
        """Seconds an uncertain send is left to settle before its hits are looked up."""
        if self.settle_time is not None:
            return self.settle_time
        return QUEUEDTRACKING_SETTLE if self.queuedtracking else DEFAULT_SETTLE

    @property
    def server_pause_path(self) -> Path:
        """Where Matomo's Retry-After ("not before") is kept for every process of the profile."""
        from matokit.serverpause import FILE_NAME

        return self.data_dir / FILE_NAME

    def has_token(self) -> bool:
        """Whether any token source is configured (without reading it)."""
        return self.token_source is not None

    def token(self) -> str:
        """Load the token from its source; ConfigError when none is configured."""
        if self.token_source is None:
            raise ConfigError(
                f"No Matomo token is configured for profile {self.profile!r}.",
                hint="Run `matokit config init`, or set MATOMO_TOKEN or MATOMO_TOKEN_FILE.",
            )
        return self.token_source.load()

    def require_url(self) -> str:
        """The Matomo URL, refusing to send a token in clear to a non-loopback host."""
        url = self.url
        if not url:
            raise ConfigError(
                f"No Matomo URL is configured for profile {self.profile!r}.",
                hint="Pass --url, set MATOMO_URL, or run `matokit config init --url URL`.",
            )
        check_transport(url, allow_insecure_http=self.allow_insecure_http)
        return url

    def require_site(self, override: int | None = None) -> int:
        """The site id to use: an explicit override, else the configured default."""
        site = override if override is not None else self.site_id
        if site is None:
            raise ConfigError(
                "No site id is configured.",
                hint="Pass --site ID, set MATOMO_SITE_ID, or set site_id in the profile.",
            )
        return site


def check_transport(url: str, *, allow_insecure_http: bool) -> None:
    """Refuse http:// to a non-loopback host unless allowed: the token would travel in clear."""
    host = urlsplit(url).hostname or ""
    insecure = url.startswith("http://") and not is_loopback(host)
    if insecure and not allow_insecure_http:
        raise InsecureURLError(
            f"Refusing http:// to {host}: the token would travel in clear.",
            hint="Use https://, or set allow_insecure_http = true in the profile "
            "if the network is trusted.",
        )


def default_config_path() -> Path:
    """The config file when no option or variable names one: platformdirs' user config dir."""
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "config.toml"


def load_config_file(path: Path) -> dict[str, Any]:
    """Parse the TOML config file; a missing file is an empty config."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ConfigError(
            f"Config file {path} is a directory.", hint="Point --config at a TOML file."
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"Config file {path} cannot be read: {exc.strerror}.",
            hint=f"Check its permissions: ls -l {path}",
        ) from None
    import tomllib  # only when a config file exists: every command starts here

    try:
        # Windows editors save UTF-8 with a byte order mark; TOML itself does not allow one.
        parsed = tomllib.loads(data.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Config file {path} is not valid TOML: {exc}.",
            hint="Fix the syntax (see README, Configuration), or move the file aside.",
        ) from None
    profiles = parsed.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(
            f"Config file {path}: `profiles` must hold [profiles.NAME] tables.",
            hint="See README, Configuration, for the layout.",
        )
    return parsed


def read_dotenv(cwd: Path) -> tuple[dict[str, str], Path | None]:
    """Variables from `./.env` (never exported into the real environment)."""
    path = cwd / ".env"
    if not path.is_file():
        return {}, None
    from dotenv import dotenv_values

    try:
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f".env file {path} cannot be read: {exc}.", hint="Fix or remove the .env file."
        ) from None
    if "MATOMO_TOKEN" in values:
        check_private_file(path, what=".env file holding MATOMO_TOKEN")
    return values, path


class _Layers:
    """The flag, environment and `.env` layers of one resolution, each read once."""

    __slots__ = ("dotenv", "env", "flags")

    def __init__(
        self, *, flags: Mapping[str, Any], env: Mapping[str, str], dotenv: Mapping[str, str]
    ) -> None:
        self.flags, self.env, self.dotenv = flags, env, dotenv

    def find(self, flag: str | None, env_name: str | None) -> tuple[Any, str] | None:
        """The value of the first layer that sets it, with that layer's label."""
        if flag and flag in self.flags:
            return self.flags[flag], FLAG
        if env_name and self.env.get(env_name, "") != "":
            return self.env[env_name], ENV
        if env_name and self.dotenv.get(env_name, "") != "":
            return self.dotenv[env_name], DOTENV
        return None

    def find_key(self, key: Key) -> tuple[Any, str] | None:
        """A setting from these layers; log_level's flags are --debug, --quiet, --verbose."""
        if key.name == "log_level":
            level = next((lvl for flag, lvl in LEVEL_FLAGS if self.flags.get(flag)), None)
            if level is not None:
                return level, FLAG
        return self.find(key.flag, key.env)


def _read_layers(
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    *,
    tolerant: bool = False,
) -> _Layers:
    """The three layers; `tolerant` reads an unreadable or unsafe `.env` as empty."""
    try:
        dotenv = read_dotenv(cwd or Path.cwd())[0]
    except ConfigError:
        if not tolerant:
            raise
        dotenv = {}
    return _Layers(
        flags={k: v for k, v in (flags or {}).items() if v is not None},
        env=dict(os.environ if env is None else env),
        dotenv=dotenv,
    )


@dataclass(frozen=True)
class Location:
    """The config file and the profile a run uses, and the layer each choice came from."""

    config_path: Path
    config_source: str
    profile: str
    profile_source: str


def locate(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Location:
    """The config file and profile selected, neither required to exist (for `config init`)."""
    return _locate(_read_layers(flags, env, cwd))


def _locate(layers: _Layers) -> Location:
    config = layers.find(*CONFIG_OPTION)
    config_path = Path(str(config[0])).expanduser() if config else default_config_path()
    chosen = layers.find(*PROFILE_OPTION)
    profile = str(chosen[0]) if chosen else DEFAULT_PROFILE
    if not PROFILE_NAME.match(profile):
        # Invalid on the command line: a usage error (2); from env or .env: config (78).
        raise (UsageError if chosen and chosen[1] == FLAG else ConfigError)(
            f"Profile name {profile!r} is not valid.",
            hint="Use letters, digits, '.', '_' or '-' (it names a directory).",
        )
    return Location(
        config_path=config_path,
        config_source=config[1] if config else DEFAULT,
        profile=profile,
        profile_source=chosen[1] if chosen else DEFAULT,
    )


def early_profile(flags: Mapping[str, Any] | None = None) -> str:
    """The profile selected by flag, environment or `.env`, for log lines written before
    `resolve()`; never raises (an invalid choice is reported by `resolve()`)."""
    try:
        return locate(flags).profile
    except MatokitError:
        return DEFAULT_PROFILE


def resolve_logging(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[str, str]:
    """(log_format, log_level) from the flag, environment and `.env` layers only.

    For the logging a run needs before `resolve()` has read the profile, and for the errors
    raised while it does. Never raises: an unreadable `.env` or a value that does not parse
    leaves the default here, and `resolve()` then reports it properly.
    """
    layers = _read_layers(flags, env, cwd, tolerant=True)
    chosen: list[str] = []
    for name in ("log_format", "log_level"):
        key = KEYS_BY_NAME[name]
        found = layers.find_key(key)
        try:
            chosen.append(key.parse(found[0]) if found else key.default)
        except ValueError:
            chosen.append(key.default)
    return chosen[0], chosen[1]


def resolve(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve every setting for the selected profile, keeping where each came from."""
    layers = _read_layers(flags, env, cwd)
    where = _locate(layers)
    config_path, profile = where.config_path, where.profile
    if where.config_source == FLAG and not config_path.exists():
        import shlex  # only on this path: keep startup lean

        raise ConfigError(
            f"Config file {config_path} (from --config) does not exist.",
            hint="Check the path, or create the file with "
            f"`matokit --config {shlex.quote(str(config_path))} config init --url URL`.",
        )
    parsed = load_config_file(config_path)
    profiles: dict[str, dict[str, Any]] = parsed.get("profiles", {})
    chosen = where.profile_source != DEFAULT
    if profile not in profiles and (chosen or profiles) and profile != DEFAULT_PROFILE:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"Profile {profile!r} is not defined in {config_path} (profiles: {known}).",
            hint=f"Create it with `matokit --profile {profile} config init`, or pick another.",
        )
    section = profiles.get(profile, {})
    check_unknown_keys(section, profile, config_path)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in KEYS:
        found = layers.find_key(key)
        if found is None and key.name in section:
            found = (section[key.name], FILE)
        if found is None:
            values[key.name], sources[key.name] = key.default, DEFAULT
            continue
        raw, source = found
        if key.name in ("url", "redis_url"):
            # A user:password@ URL: its password is masked in every message from now on.
            register_url_credentials(str(raw))
        if key.name == "redis_url" and source == FILE and urlsplit(str(raw)).password:
            check_private_file(config_path, what="Config file holding a Redis password")
        value = parse_setting(key, raw, source=source, config_path=config_path, profile=profile)
        if key.name in ("cache_dir", "data_dir") and source in (ENV, DOTENV):
            value = value / profile  # the variable names a root shared by all profiles
        values[key.name], sources[key.name] = value, source

    _default_dirs(values, sources, profile)
    sources["profile"] = where.profile_source
    token_source = _token_source(layers, section, config_path, values)
    redis_password = layers.env.get("MATOKIT_REDIS_PASSWORD") or layers.dotenv.get(
        "MATOKIT_REDIS_PASSWORD"
    )
    if redis_password:
        from matokit.redact import register_secret

        register_secret(redis_password)
    return Settings(
        profile=profile,
        config_path=config_path,
        config_exists=config_path.exists(),
        sources=sources,
        token_source=token_source,
        redis_password_env=redis_password or None,
        **values,
    )


def parse_setting(key: Key, raw: Any, *, source: str, config_path: Path, profile: str) -> Any:
    """One setting's value parsed; the error names where it came from and how to fix it.

    Invalid on the command line it is a usage error (2); from env, `.env` or a file, a config
    error (78).
    """
    try:
        return key.parse(raw)
    except ValueError as exc:
        where = _where(key, source, config_path, profile)
        error = UsageError if source == FLAG else ConfigError
        raise error(
            f"{key.name} {raw!r} from {where} {exc}.",
            hint=_fix_hint(key, source, config_path, profile),
        ) from None


def _where(key: Key, source: str, config_path: Path, profile: str) -> str:
    if source == FLAG:
        return f"option {key.flag}"
    if source in (ENV, DOTENV):
        return f"{'.env variable' if source == DOTENV else 'environment variable'} {key.env}"
    return f"{config_path} [profiles.{profile}]"


def _fix_hint(key: Key, source: str, config_path: Path, profile: str) -> str:
    if source == FLAG:
        return f"Pass a valid value to {key.flag} ({key.help})."
    if source in (ENV, DOTENV):
        place = "the .env file" if source == DOTENV else "the environment"
        return f"Correct or unset {key.env} in {place} ({key.help})."
    return f"Correct {key.name} in [profiles.{profile}] of {config_path} ({key.help})."


def check_unknown_keys(section: Mapping[str, Any], profile: str, path: Path) -> None:
    """Refuse a profile key MatoKit does not know, suggesting the closest known one."""
    for name in section:
        if name not in PROFILE_KEYS:
            import difflib  # only on this path: keep startup lean

            close = difflib.get_close_matches(name, sorted(PROFILE_KEYS), n=1)
            suggestion = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"Unknown key {name!r} in {path} [profiles.{profile}].{suggestion}",
                hint="See README, Configuration, for the keys a profile takes.",
            )


def _default_dirs(values: dict[str, Any], sources: dict[str, str], profile: str) -> None:
    if values["cache_dir"] is None or values["data_dir"] is None:
        from platformdirs import user_cache_dir, user_data_dir

        if values["cache_dir"] is None:
            values["cache_dir"] = Path(user_cache_dir(APP_NAME)) / profile
        if values["data_dir"] is None:
            values["data_dir"] = Path(user_data_dir(APP_NAME)) / profile


def _token_source(
    layers: _Layers,
    section: Mapping[str, Any],
    config_path: Path,
    values: Mapping[str, Any],
) -> TokenSource | None:
    timeout = float(values["token_command_timeout"])
    flag, file_env = TOKEN_FILE_OPTION
    if layers.flags.get(flag):
        return TokenSource("file", str(Path(layers.flags[flag]).expanduser()), FLAG)
    env = layers.env
    for layer, origin, kind in ((env, ENV, "env"), (layers.dotenv, DOTENV, "dotenv")):
        if layer.get("MATOMO_TOKEN"):
            return TokenSource(kind, "MATOMO_TOKEN", origin, value=layer["MATOMO_TOKEN"])
        if layer.get(file_env):
            path = str(Path(layer[file_env]).expanduser())
            return TokenSource("file", path, origin)
    present = [name for name in TOKEN_KEYS if section.get(name) not in (None, "")]
    if len(present) > 1:
        raise ConfigError(
            f"{config_path}: set only one of {', '.join(present)} in a profile.",
            hint="Keep the one you use and delete the others.",
        )
    if not present:
        return None
    name, raw = present[0], str(section[present[0]])
    origin = f"{config_path.name} {name}"
    if name == "token":
        check_private_file(config_path, what="Config file holding a token")
        return TokenSource("config", "token", origin, value=raw)
    if name == "token_file":
        token_path = Path(raw).expanduser()
        if not token_path.is_absolute():
            token_path = config_path.parent / token_path
        return TokenSource("file", str(token_path), origin)
    if name == "token_env":
        return TokenSource("env_var", raw, origin, value=env.get(raw) or None)
    return TokenSource("command", raw, origin, command_timeout=timeout)


# --- the agent tool servers ------------------------------------------------------------------


def tools_bearer_token(
    flag_file: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str | None:
    """The bearer token of `matokit tools serve`, None when none is configured.

    From `--bearer-token-file`, else the environment (`MATOKIT_TOOLS_TOKEN`, then
    `MATOKIT_TOOLS_TOKEN_FILE`), else `.env` (likewise; a `.env` holding the token itself must
    be private). Checked and registered for redaction by `secrets.read_bearer_token`.
    """
    flag, file_env = TOOLS_TOKEN_FILE_OPTION
    if flag_file:
        return read_bearer_token(path=Path(flag_file).expanduser(), origin=flag)
    dotenv, dotenv_path = read_dotenv(cwd or Path.cwd())
    for layer, origin in ((os.environ if env is None else env, ENV), (dotenv, DOTENV)):
        if layer.get(TOOLS_TOKEN_ENV):
            if origin == DOTENV and dotenv_path is not None:
                check_private_file(dotenv_path, what=f".env file holding {TOOLS_TOKEN_ENV}")
            return read_bearer_token(
                value=layer[TOOLS_TOKEN_ENV], origin=f"{TOOLS_TOKEN_ENV} ({origin})"
            )
        if layer.get(file_env):
            return read_bearer_token(path=Path(layer[file_env]).expanduser(), origin=file_env)
    return None


def tool_command_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the commands an agent tool server runs: this process's, without
    the service's bearer token (a command never needs it, so it never holds it)."""
    source = os.environ if env is None else env
    hidden = {TOOLS_TOKEN_ENV, TOOLS_TOKEN_FILE_OPTION[1]}
    return {name: value for name, value in source.items() if name not in hidden}
