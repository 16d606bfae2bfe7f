"""The command tree as data: the `describe` manifest and static shell completion scripts.

Both are generated from the live Click tree that Typer builds, so they cannot drift from
the CLI; a test regenerates `completions/` and fails when the committed files are stale. The
tree is read through Typer's own classes, never through `click` (see `matokit.cli.typerclick`):
from Typer 0.26 the Click underneath is Typer's private copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from matokit import __version__
from matokit.config import option_env

# Every command and parameter of the tree is built by Typer (ReportGroup is a TyperGroup).
Command = TyperCommand | TyperGroup
Param = TyperOption | TyperArgument


def walk(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every command with its path, parents first, children sorted by name."""
    yield path, command
    for name, child in _children(command):
        yield from walk(child, (*path, name))


def _children(command: Command) -> list[tuple[str, Command]]:
    """A group's visible subcommands, sorted by name."""
    if not isinstance(command, TyperGroup):
        return []
    return [
        (name, child)
        for name, child in sorted(command.commands.items())
        if isinstance(child, TyperCommand | TyperGroup) and not child.hidden
    ]


def _params(command: Command) -> list[Param]:
    """The command's own options and arguments (Click adds --help only when parsing)."""
    return [p for p in command.params if isinstance(p, TyperOption | TyperArgument)]


def _param(param: Param, *, is_global: bool) -> dict[str, Any]:
    is_option = isinstance(param, TyperOption)
    entry: dict[str, Any] = {
        "name": param.name,
        "kind": "option" if is_option else "argument",
        "flags": list(param.opts) + list(getattr(param, "secondary_opts", [])),
        "type": _type_name(param),
        "required": bool(param.required),
        "multiple": bool(getattr(param, "multiple", False) or param.nargs == -1),
        "default": _default(param),
        "help": getattr(param, "help", None) or "",
    }
    choices = getattr(param.type, "choices", None)  # click.Choice, or Typer's own from 0.26
    if choices is not None:
        entry["choices"] = list(choices)
    # The variable behind a global option comes from the settings table in matokit.config.
    names = option_env() if is_global else {}
    env = next((names[f] for f in param.opts if f in names), None)
    if env:
        entry["env"] = env
    return entry


def _type_name(param: Param) -> str:
    if isinstance(param, TyperOption) and param.is_flag:
        return "boolean"
    # Click names them integer/float/boolean; Typer's own copy (0.26+) int/float/bool.
    name = getattr(param.type, "name", "text").lower()
    kinds = {"integer": "integer", "int": "integer", "float": "number", "boolean": "boolean"}
    return {**kinds, "bool": "boolean"}.get(name, "string")


def _default(param: Param) -> Any:
    value = param.default
    if callable(value) or value is None:
        return None
    if isinstance(value, tuple | list):
        return list(value)
    return value if isinstance(value, str | int | float | bool) else str(value)


def manifest(root: Command) -> dict[str, Any]:
    """A machine-readable description of every command and option."""
    from matokit.cli import effects
    from matokit.cli.exit import ExitCode

    commands = []
    for path, command in walk(root):
        if not path:
            continue
        name = " ".join(path)
        params = [p for p in _params(command) if p.name not in ("help",)]
        entry: dict[str, Any] = {
            "name": name,
            "help": (command.help or "").strip().split("\n\n")[0],
            "group": isinstance(command, TyperGroup),
            "effect": effects.effect_of(name),
            "agent_tool": effects.effect_of(name) is not None
            and name not in effects.NOT_AGENT_TOOLS,
            "params": [_param(p, is_global=False) for p in params],
        }
        if name in effects.FLAGS:
            entry["effect_flags"] = dict(effects.FLAGS[name])
        commands.append(entry)
    return {
        "schema": "matokit.describe/1",
        "program": "matokit",
        "version": __version__,
        "global_options": [_param(p, is_global=True) for p in _params(root) if p.name != "help"],
        "commands": commands,
        "effects": dict(effects.LABELS),
        "exit_codes": {code.name.lower(): int(code) for code in ExitCode},
        "health_exit_codes": {"ok": 0, "warning": 1, "critical": 2, "unknown": 3},
    }


def manifest_text(data: dict[str, Any]) -> str:
    """The manifest's commands as text: name, effect (and what flags change it), summary."""
    labels = data["effects"]
    rows = []
    for command in data["commands"]:
        if command["effect"] is None:
            continue
        effect = labels[command["effect"]]
        flags = command.get("effect_flags", {})
        if flags:
            effect += " (" + ", ".join(f"{f}: {labels[e]}" for f, e in flags.items()) + ")"
        rows.append((command["name"], effect, command["help"]))
    width = max(len(name) for name, _, _ in rows)
    pad = " " * (width + 2)
    return "".join(f"{name:<{width}}  {effect}\n{pad}{text}\n" for name, effect, text in rows)


def _words(command: Command) -> list[str]:
    words = [name for name, _ in _children(command)]
    for param in _params(command):
        if isinstance(param, TyperOption):
            words += list(param.opts) + list(param.secondary_opts)
    return words


def _value_cases(tree: list[tuple[str, Command]], assign: str, end: str) -> str:
    """`case` entries "PATH|--option") that complete the values of a choice option."""
    return "".join(
        f'        "{path}|{opt}") {assign}{" ".join(map(str, choices))}{end} ;;\n'
        for path, command in tree
        for param in command.params
        if isinstance(param, TyperOption)
        and (choices := getattr(param.type, "choices", None)) is not None
        for opt in param.opts
    )


def completion_script(root: Command, shell: str) -> str:
    """A static completion script for bash, zsh or fish."""
    tree = [(" ".join(path), command) for path, command in walk(root)]
    if shell == "bash":
        return _bash(tree)
    if shell == "zsh":
        return _zsh(tree)
    if shell == "fish":
        return _fish(tree)
    raise ValueError(f"unsupported shell {shell!r}")


_HEADER = "# matokit {version} shell completion, generated by `matokit completions {shell}`.\n"


def _path_loop(tree: list[tuple[str, Command]], first: int) -> str:
    paths = "|".join(f'"{p}"' for p, _ in tree if p)
    return (
        f"    for ((i = {first}; i < {'COMP_CWORD' if first == 1 else 'CURRENT'}; i++)); do\n"
        f'        w="${{{"COMP_WORDS" if first == 1 else "words"}[i]}}"\n'
        '        [[ "$w" == -* ]] && continue\n'
        '        case "${path:+$path }$w" in\n'
        f'            {paths}) path="${{path:+$path }}$w" ;;\n'
        "        esac\n"
        "    done\n"
    )


def _bash(tree: list[tuple[str, Command]]) -> str:
    cases = "".join(f'        "{path}") words="{" ".join(_words(cmd))}" ;;\n' for path, cmd in tree)
    return (
        _HEADER.format(version=__version__, shell="bash") + "_matokit_complete() {\n"
        '    local cur="${COMP_WORDS[COMP_CWORD]}" path="" w i words=""\n'
        + _path_loop(tree, 1)
        + '    case "$path" in\n'
        + cases
        + "    esac\n"
        + '    case "$path|${COMP_WORDS[COMP_CWORD-1]}" in\n'
        + _value_cases(tree, 'words="', '"')
        + "    esac\n"
        '    COMPREPLY=( $(compgen -W "$words" -- "$cur") )\n'
        "}\n"
        "complete -o default -F _matokit_complete matokit\n"
    )


def _zsh(tree: list[tuple[str, Command]]) -> str:
    cases = "".join(
        f'        "{path}") choices=({" ".join(_words(cmd))}) ;;\n' for path, cmd in tree
    )
    return (
        "#compdef matokit\n" + _HEADER.format(version=__version__, shell="zsh") + "_matokit() {\n"
        '    local path="" w i\n'
        "    local -a choices\n"
        + _path_loop(tree, 2)
        + '    case "$path" in\n'
        + cases
        + "    esac\n"
        + '    case "$path|${words[CURRENT-1]}" in\n'
        + _value_cases(tree, "choices=(", ")")
        + "    esac\n"
        "    compadd -a choices\n"
        "}\n"
        'if [[ "$funcstack[1]" == "_matokit" ]]; then _matokit "$@";\n'
        "else compdef _matokit matokit; fi\n"
    )


def _fish(tree: list[tuple[str, Command]]) -> str:
    lines = [_HEADER.format(version=__version__, shell="fish").rstrip(), "complete -c matokit -f"]
    for path, command in tree:
        parts = path.split()
        if parts:
            parent = " ".join(parts[:-1])
            condition = _fish_condition(parent, tree)
            help_text = (command.help or "").strip().split("\n")[0].replace("'", "\\'")
            lines.append(
                f"complete -c matokit -n '{condition}' -a {parts[-1]} -d '{help_text[:60]}'"
            )
        condition = _fish_condition(path, tree)
        for param in _params(command):
            if not isinstance(param, TyperOption):
                continue
            for opt in list(param.opts) + list(param.secondary_opts):
                flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
                help_text = (param.help or "").split("\n")[0].replace("'", "\\'")
                choices = getattr(param.type, "choices", None)
                if choices is not None:
                    flag += f" -xa '{' '.join(map(str, choices))}'"
                lines.append(f"complete -c matokit -n '{condition}' {flag} -d '{help_text[:60]}'")
    return "\n".join(lines) + "\n"


def _fish_condition(path: str, tree: list[tuple[str, Command]]) -> str:
    if not path:
        return "__fish_use_subcommand"
    parts = path.split()
    seen = "; and ".join(f"__fish_seen_subcommand_from {p}" for p in parts)
    children = [
        p.split()[-1]
        for p, _ in tree
        if p.startswith(path + " ") and p.count(" ") == path.count(" ") + 1
    ]
    if children:
        return f"{seen}; and not __fish_seen_subcommand_from {' '.join(children)}"
    return seen


# --- the lean path's option table ------------------------------------------------------------

REPORT_OPTIONS_FILE = "matokit/cli/report_options.py"
_REPORT_OPTIONS_HEADER = (
    '"""The options of `matokit [GLOBAL] report show NAME`, as data for the lean cache hit.\n'
    "\n"
    "GENERATED from the Click command; do not edit. Regenerate with\n"
    f"`python -m matokit.cli.regenerate > {REPORT_OPTIONS_FILE}`.\n"
    "`report_show.parse_argv` reads it so that it never imports typer or click;\n"
    "tests/test_cli_report.py fails when it no longer matches the CLI.\n"
    "\n"
    "Each parameter: name -> (option strings, takes a value, type).\n"
    '"""\n'
    "\n"
    "from __future__ import annotations\n"
    "\n"
    "Param = tuple[tuple[str, ...], bool, str]"
)


def report_options_source(root: Command) -> str:
    """The source of `matokit/cli/report_options.py`, built from the live Click tree."""
    assert isinstance(root, TyperGroup)
    group = root.commands["report"]
    assert isinstance(group, TyperGroup)
    show = group.commands["show"]
    assert isinstance(show, TyperCommand)
    lines = [_REPORT_OPTIONS_HEADER]
    lines += _param_table("GLOBAL", root)
    arguments = tuple(p.name for p in show.params if isinstance(p, TyperArgument))
    lines += [
        "",
        f"REPORT_COMMANDS = {_literal(tuple(sorted(group.commands)))}",
        f"SHOW_ARGUMENTS = {_literal(arguments)}",
    ]
    lines += _param_table("SHOW", show)
    return "\n".join(lines) + "\n"


def _literal(value: object) -> str:
    """repr() with double quotes, as ruff formats it (names and flags hold no quotes)."""
    return repr(value).replace("'", '"')


def _param_table(name: str, command: Command) -> list[str]:
    lines = ["", f"{name}: dict[str, Param] = {{"]
    for param in command.params:
        if not isinstance(param, TyperOption):
            continue
        flags = tuple(param.opts) + tuple(param.secondary_opts)
        takes_value = not param.is_flag and not param.count
        entry = (flags, takes_value, _type_name(param))
        lines.append(f"    {_literal(param.name)}: {_literal(entry)},")
    lines.append("}")
    return lines
