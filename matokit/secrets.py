"""Where the Matomo token comes from, and the checks that keep it private.

A token comes from exactly one source: `MATOMO_TOKEN` (environment or `.env`), a token file
(`--token-file`, `MATOMO_TOKEN_FILE`, `token_file`), another environment variable named by
`token_env`, or a credential-helper command (`token_command`). Files holding a token must not
be readable by other users (like ssh, we refuse rather than warn).
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path

from matokit.errors import ConfigError, InsecurePermissionsError
from matokit.redact import register_secret

# A token is 32 characters; a first line longer than this is not a token file.
TOKEN_FILE_MAX_BYTES = 4096


def check_private_file(path: Path, *, what: str) -> None:
    """Refuse a secret-bearing file that group or others can read or write."""
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # the caller reports a missing/unreadable file in its own words
    _check_private_mode(path, mode, what=what)


def _check_private_mode(path: Path, mode: int, *, what: str) -> None:
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecurePermissionsError(
            f"{what} {path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {shlex.quote(str(path))}",
            hint="MatoKit refuses secrets that others can read, as ssh does with keys.",
        )


@dataclass
class TokenSource:
    """One place a token can be read from; `describe()` never includes the value."""

    kind: str  # "env" | "dotenv" | "file" | "env_var" | "command" | "config"
    detail: str  # env var name, file path or command line (never the token)
    origin: str  # which layer configured it: flag, env, .env, config file
    command_timeout: float = 10.0
    value: str | None = field(default=None, repr=False)
    _loaded: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """A human description such as `token file ~/.matomo-token (from --token-file)`."""
        names = {
            "env": "environment variable",
            "dotenv": ".env variable",
            "file": "token file",
            "env_var": "environment variable (token_env)",
            "command": "token_command",
            "config": "config file key",
        }
        return f"{names[self.kind]} {self.detail} (from {self.origin})"

    def load(self) -> str:
        """Read the token (running the helper command at most once)."""
        if self._loaded is None:
            token = self._read().strip()
            if not token:
                raise ConfigError(
                    f"The token from {self.describe()} is empty.",
                    hint="Put the token_auth value (Matomo > Personal > Security) there.",
                )
            if any(ch.isspace() for ch in token):
                raise ConfigError(
                    f"The token from {self.describe()} contains whitespace.",
                    hint="A Matomo token is one word of 32 hex characters; check the source.",
                )
            register_secret(token)
            self._loaded = token
        return self._loaded

    def _read(self) -> str:
        if self.kind in ("env", "dotenv", "config", "env_var"):
            if self.value is None:
                raise ConfigError(
                    f"The environment variable {self.detail} named by token_env is not set.",
                    hint=f"Export {self.detail}, or change token_env in the profile.",
                )
            return self.value
        if self.kind == "file":
            return _read_token_file(Path(self.detail))
        return _run_token_command(self.detail, timeout=self.command_timeout)


@dataclass(frozen=True)
class SecretFileWords:
    """How messages about one kind of secret file name it and the settings that point at it."""

    what: str = "Token file"
    options: str = "--token-file, MATOMO_TOKEN_FILE or token_file"
    create: str = "Create it with `matokit config init`, or fix token_file / MATOMO_TOKEN_FILE."
    holds: str = "the 32-character token_auth"


MATOMO_TOKEN_FILE = SecretFileWords()


def _read_token_file(path: Path, words: SecretFileWords = MATOMO_TOKEN_FILE) -> str:
    """The first line of a regular, private token file, read with bounded size and time.

    Opening never blocks (a FIFO without a writer would hang forever) and anything that is not
    a regular file (a device such as /dev/null, a directory, a FIFO) is refused before its
    permissions are judged: `chmod 600 /dev/null` is no advice to give.
    """
    path = path.expanduser()
    what = words.what
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ConfigError(
            f"{what} {path} does not exist.",
            hint=words.create,
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{what} {path} cannot be opened: {exc.strerror}.",
            hint=f"Check that the file is a readable text file owned by you: ls -l {path}",
        ) from None
    try:
        mode = os.fstat(fd).st_mode  # of the file opened, not of whatever the path names later
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"{what} {path} is not a regular file (it is {_file_kind(mode)}).",
                hint=f"Point {words.options} at a file holding the token on its first line.",
            )
        _check_private_mode(path, mode, what=what)
        data = os.read(fd, TOKEN_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{what} {path} cannot be read: {exc.strerror}.",
            hint=f"Check that the file is a readable text file owned by you: ls -l {path}",
        ) from None
    finally:
        os.close(fd)
    line, newline, _ = data.partition(b"\n")
    if not newline and len(data) > TOKEN_FILE_MAX_BYTES:
        raise ConfigError(
            f"{what} {path} does not hold a token: its first line is longer than "
            f"{TOKEN_FILE_MAX_BYTES} bytes.",
            hint=f"A {what.lower()} holds {words.holds} on its first line.",
        )
    try:
        return line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{what} {path} is not text (its first line is not UTF-8).",
            hint=f"A {what.lower()} holds {words.holds} on its first line.",
        ) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _run_token_command(command: str, *, timeout: float) -> str:
    import subprocess  # only credential helpers need it; keep it off the startup path

    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(
            f"token_command cannot be parsed: {exc}.", hint="Fix the quoting in token_command."
        ) from None
    if not argv:
        raise ConfigError("token_command is empty.", hint="Set it to a command printing the token.")
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError(
            f"token_command {argv[0]!r} was not found.",
            hint="Use the full path of the credential helper in token_command.",
        ) from None
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"token_command {argv[0]!r} did not finish within {timeout:g} s.",
            hint="Check the helper by hand, or raise token_command_timeout in the profile.",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"token_command {argv[0]!r} could not run: {exc.strerror}.",
            hint="Check that the helper is executable.",
        ) from None
    if done.returncode != 0:
        # stderr of a helper may echo secrets; report only its exit status.
        raise ConfigError(
            f"token_command {argv[0]!r} failed with exit status {done.returncode}.",
            hint="Run the helper by hand to see why (unlock the vault, log in...).",
        )
    return done.stdout.splitlines()[0] if done.stdout else ""


# --- the bearer token of `matokit tools serve` ----------------------------------------------
# Messages write "bearer-token": redaction masks the word after "Bearer " wherever it appears.

BEARER_TOKEN_FILE = SecretFileWords(
    what="Bearer-token file",
    options="--bearer-token-file or MATOKIT_TOOLS_TOKEN_FILE",
    create="Create it (e.g. `openssl rand -hex 32 > FILE; chmod 600 FILE`), or fix "
    "--bearer-token-file / MATOKIT_TOOLS_TOKEN_FILE.",
    holds="the bearer-token",
)
BEARER_MIN_LENGTH = 16


def read_bearer_token(*, path: Path | None = None, value: str | None = None, origin: str) -> str:
    """The tools service's bearer token from a private file or a variable's `value`, checked
    (printable ASCII, no whitespace, at least 16 characters) and registered for redaction."""
    token = (_read_token_file(path, BEARER_TOKEN_FILE) if path else value or "").strip()
    register_secret(token)
    fix = "Use a long random value, e.g. `openssl rand -hex 32`."
    if not token:
        raise ConfigError(f"The bearer-token from {origin} is empty.", hint=fix)
    if not all("!" <= ch <= "~" for ch in token):
        raise ConfigError(
            f"The bearer-token from {origin} holds whitespace or a character that is not "
            "printable ASCII (it travels in an HTTP header).",
            hint=fix,
        )
    if len(token) < BEARER_MIN_LENGTH:
        raise ConfigError(
            f"The bearer-token from {origin} is shorter than {BEARER_MIN_LENGTH} characters.",
            hint=fix,
        )
    return token
