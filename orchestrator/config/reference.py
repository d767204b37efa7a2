"""``docs/configuration.md`` and ``.env.example``, generated from the table so
that neither can drift from what the server reads (a test compares them)."""

from __future__ import annotations

import textwrap
from typing import Any

from orchestrator.config.parsing import SAME, Variable
from orchestrator.config.table import SECTIONS, VARIABLES

SOURCE = "orchestrator/config/table.py"

INTRO = """\
Everything comes from environment variables, over an optional `.env` file in
the working directory (the environment wins; the file is read once, at
start-up). Copy `.env.example` to `.env` to start. The vendor sample's names
(`SESSION_SERVER`, `JWT_PUBLIC_KEY`, `JWT_PRIVATE_KEY`, `ORCHESTRATION_SERVER`,
`CONTROL_VIA_BROWSER`, `PRODUCTION_PERSONA`, `PORT`) keep their meanings. An
empty value counts as unset. The configuration is validated at start-up; a bad
value stops the server with `configuration error: ...` (naming the variable)
and exit status 2."""

REFUSALS_INTRO = """\
With `ORCHESTRATOR_ENV=production` or `PRODUCTION_PERSONA=true` the server
refuses to start unless each rule below holds. In every mode, a signing key,
platform secret or API key shorter than 32 bytes is refused."""

ENV_INTRO = """\
# Copy to .env and fill in. Every variable is optional in development: with
# none set, the server runs with an ephemeral signing key and says so.
# The environment wins over this file. An empty value counts as unset.
# docs/configuration.md describes each variable and the production rules."""


def _value(value: Any) -> str:
    """A default as it would be written in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return "" if value is None else str(value)


def _shown(value: Any) -> str:
    text = _value(value)
    return f"`{text}`" if text else "none"


def default_text(variable: Variable) -> str:
    """The default column: the shown default, and production's when it differs."""
    if variable.shown_default is not None:
        return variable.shown_default
    development = _shown(variable.default)
    if variable.production_default is SAME:
        return development
    return f"{development} (development), {_shown(variable.production_default)} (production)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    """The whole configuration page."""
    lines = [
        "# Configuration",
        "",
        f"<!-- Generated from {SOURCE} by `python -m orchestrator.config --markdown`;",
        "     edit the table, not this page. -->",
        "",
        INTRO,
    ]
    for section in SECTIONS:
        lines += ["", f"## {section.title}", ""]
        lines += ["| Variable | Type | Default | Production | Meaning |", "|---|---|---|---|---|"]
        for variable in section.variables:
            kind = variable.kind.name
            if variable.limits is not None:
                kind += f", {variable.limits.describe()}"
            rule = variable.production.text if variable.production else ""
            cells = (f"`{variable.name}`", kind, default_text(variable), rule, variable.doc)
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines += ["", "## Production refusals", "", REFUSALS_INTRO, ""]
    lines += [
        f"- `{variable.name}`: {variable.production.text};"
        for variable in VARIABLES
        if variable.production is not None and variable.production.refusal
    ]
    lines[-1] = lines[-1].rstrip(";") + "."
    return "\n".join(lines) + "\n"


def env_example_value(variable: Variable) -> str:
    """What ``.env.example`` sets: the default when it is plain and the same in
    both modes; empty (the default applies) otherwise."""
    if variable.kind.secret or variable.production_default is not SAME:
        return ""
    value = _value(variable.default)
    return "" if " " in value else value


def render_env_example() -> str:
    """``.env.example``: every variable a deployment may set, with its doc."""
    lines = [
        f"# Generated from {SOURCE} by `python -m orchestrator.config --env-example`.",
        ENV_INTRO,
    ]
    for section in SECTIONS:
        variables = [variable for variable in section.variables if not variable.internal]
        if not variables:
            continue
        lines += ["", f"# --- {section.title} ".ljust(79, "-")]
        for variable in variables:
            doc = variable.doc
            if variable.production is not None:
                doc += f" Production: {variable.production.text}."
            lines += textwrap.wrap(
                doc.replace("`", ""),
                77,
                initial_indent="# ",
                subsequent_indent="# ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            lines.append(f"{variable.name}={env_example_value(variable)}")
    return "\n".join(lines) + "\n"
