"""docs/reference/cli.md: every `playground` command and option, walked from the argparse parser."""

from __future__ import annotations

import argparse
import json

from cluster.cli import build_parser
from cluster.reference_md import anchor, cell, header, table

USAGE_WIDTH = 100  # argparse wraps usage to the terminal; a fixed width keeps the page the same everywhere


def commands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(command line, parser, one-line help) for the parser and every subcommand under it, in definition order."""
    out = [(parser.prog, parser, parser.description or "")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a command already listed
                    continue
                seen.add(id(sub))
                first, *rest = commands(sub)
                out += [(first[0], sub, helps.get(name) or sub.description or ""), *rest]
    return out


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's own arguments (not -h, not the subcommand choice)."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction))]


def _option_row(a: argparse.Action) -> list[str]:
    flags = a.option_strings
    name = ", ".join(f"`{o}`" for o in flags) if flags else f"`{a.metavar or a.dest}`"
    if flags and a.nargs != 0 and a.metavar:
        name += f" `{a.metavar}`"
    if a.nargs == 0:
        value = "flag"
    elif a.choices is not None:
        value = " \\| ".join(f"`{c}`" for c in a.choices)
    else:
        value = f"`{getattr(a.type, '__name__', None) or 'str'}`"
    extra = {"*": "zero or more", "+": "one or more", "?": "optional"}.get(a.nargs) if isinstance(a.nargs, str) \
        else (f"{a.nargs} values" if isinstance(a.nargs, int) and a.nargs > 1 else None)
    extra = [e for e in (extra, "repeatable" if isinstance(a, argparse._AppendAction) else None,
                         "required" if a.required and flags else None) if e]
    if extra:
        value += " (" + ", ".join(extra) + ")"
    show_default = a.default not in (None, argparse.SUPPRESS) and not (a.nargs == 0 and a.default is False)
    default = f"`{json.dumps(a.default, default=str)}`" if show_default else ""
    text = a.help or ""
    if "%(" in text:
        text = text % {**vars(a), "prog": "playground"}
    return [name, value, default, cell(text)]


def _usage(parser: argparse.ArgumentParser) -> str:
    fmt = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return fmt.format_help().strip()


def render_cli(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole cli.md page, from `cluster.cli.build_parser()` unless a parser is given."""
    if parser is None:
        parser = build_parser()
    cmds = commands(parser)
    out = header("Command line reference",
                  f"Options that come before the command, such as `--workspace`, are those of `{parser.prog}`.")
    out += table(["Command", "What it does"], [[f"[`{c}`](#{anchor(c)})", cell(h)] for c, p, h in cmds[1:]
                                                if not _has_subcommands(p)])
    out.append("")
    for cmd, sub, help_text in cmds:
        out += [f"## `{cmd}`", ""]
        if help_text:
            out += [cell(help_text), ""]
        out += ["```text", _usage(sub), "```", ""]
        if _has_subcommands(sub):
            out += ["Subcommands: " + ", ".join(f"[`{c}`](#{anchor(c)})" for c, p, _ in cmds
                                                if p is not sub and c.rsplit(" ", 1)[0] == cmd), ""]
        opts = options(sub)
        if opts:
            out += [*table(["Argument", "Value", "Default", "Description"], [_option_row(a) for a in opts]), ""]
        for group in sub._mutually_exclusive_groups:
            names = ", ".join(f"`{a.option_strings[0] if a.option_strings else a.dest}`" for a in group._group_actions)
            out += [f"Give {'exactly' if group.required else 'at most'} one of {names}.", ""]
    return "\n".join(out).rstrip() + "\n"


def _has_subcommands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
