"""The configuration: one settings object read from a table of variables.

``table`` declares every environment variable once; ``Settings`` (in
``settings``) reads them and holds the rules, ``validation`` the checks of single
values, ``reference`` generates ``docs/configuration.md`` and ``.env.example``
from the table.
"""

from orchestrator.config.parsing import SettingsError
from orchestrator.config.settings import Settings
from orchestrator.config.table import (
    CONTROL_PATH,
    DEFAULT_APOLOGY,
    DEFAULT_BUDGET_REPLY,
    DEFAULT_HANDLER,
    DEFAULT_PORT,
    DEFAULT_SESSION_SERVER,
    EPHEMERAL_FLAG,
    EPHEMERAL_KEY_NAME,
    VARIABLES,
)
from orchestrator.config.validation import load_resolver, origin_pattern

__all__ = [
    "CONTROL_PATH",
    "DEFAULT_APOLOGY",
    "DEFAULT_BUDGET_REPLY",
    "DEFAULT_HANDLER",
    "DEFAULT_PORT",
    "DEFAULT_SESSION_SERVER",
    "EPHEMERAL_FLAG",
    "EPHEMERAL_KEY_NAME",
    "VARIABLES",
    "Settings",
    "SettingsError",
    "load_resolver",
    "origin_pattern",
]
