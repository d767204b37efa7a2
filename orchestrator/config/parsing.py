"""How a variable is declared and read: one parser per kind of value, limits,
production rules, and the ``module:callable`` import shared by the loaders.

A value is read the same way for every variable: an empty value counts as
unset and gives the default (which may differ in production); anything else
goes through its kind's parser, whose errors name the variable.
"""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """The configuration cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Kind:
    """A kind of value: its name in the docs and its one parser."""

    name: str
    parse: Callable[[str, str], Any]  # (variable name, non-empty raw text) -> value
    strip: bool = True  # False: the value is used byte for byte (a signing secret)
    secret: bool = False  # never shown: not in a repr, not in the docs' examples


def _boolean(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (use true or false)")


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _text(_name: str, raw: str) -> str:
    return raw


def _items(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    networks = []
    for item in _items(name, raw):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise SettingsError(
                f"{name}: {item!r} is not a network ({exc}); use CIDRs such as 10.0.0.0/8, "
                "2001:db8::/32 or single addresses"
            ) from None
    return tuple(networks)


BOOLEAN = Kind("boolean", _boolean)
INTEGER = Kind("integer", _integer)
NUMBER = Kind("number", _number)
TEXT = Kind("text", _text)
LOWERCASE = Kind("text", lambda _name, raw: raw.lower())
LIST = Kind("comma-separated list", _items)
NETWORKS = Kind("comma-separated networks", _networks)
SECRET = Kind("secret", _text, secret=True)
SECRET_LIST = Kind("comma-separated secrets", _items, secret=True)
RAW_SECRET = Kind("secret", _text, strip=False, secret=True)


def choice(*options: str) -> Kind:
    """One of ``options``, case-insensitive."""

    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise SettingsError(f"{name}={value!r}: use {' or '.join(options)}")
        return value

    return Kind(" | ".join(f"`{option}`" for option in options), parse)


@dataclass(frozen=True)
class Limits:
    """Bounds of a number, checked on the settings object (so also in tests that
    build one directly)."""

    low: int
    high: int | None = None
    exclusive: bool = False  # low itself is refused

    def check(self, name: str, value: float) -> None:
        if self.exclusive and value <= self.low:
            raise SettingsError(f"{name} must be greater than {self.low}")
        if self.high is None and value < self.low:
            raise SettingsError(f"{name} must be at least {self.low}")
        if self.high is not None and not self.low <= value <= self.high:
            raise SettingsError(f"{name} must be between {self.low} and {self.high}")

    def describe(self) -> str:
        if self.exclusive:
            return f"> {self.low}"
        return f"≥ {self.low}" if self.high is None else f"{self.low} to {self.high}"


def greater_than(low: int) -> Limits:
    return Limits(low, exclusive=True)


def at_least(low: int) -> Limits:
    return Limits(low)


def between(low: int, high: int) -> Limits:
    return Limits(low, high)


@dataclass(frozen=True)
class ProductionRule:
    """What production mode demands of a variable, as the docs say it; ``refused``
    holds values production refuses (``""``: unset), which the tests try."""

    text: str
    refused: tuple[str, ...] = ()
    refusal: bool = True  # False: a note (allowed, with a warning), not a refusal


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()  # the production default is the development one


@dataclass(frozen=True)
class Variable:
    """One environment variable: everything the code, the docs and ``.env.example`` need."""

    name: str
    kind: Kind
    doc: str
    # In development (and production unless production_default); a callable is
    # called each time (a default that depends on the user, like a path).
    default: Any = None
    production_default: Any = SAME
    shown_default: str | None = None  # how the docs say the default, when not its value
    limits: Limits | None = None
    production: ProductionRule | None = None
    internal: bool = False  # set by the server itself: not in .env.example

    def default_for(self, production: bool) -> Any:
        if production and self.production_default is not SAME:
            return self.production_default
        return self.default() if callable(self.default) else self.default

    def read(self, env: Mapping[str, str], production: bool) -> Any:
        raw = env.get(self.name, "")
        text = raw.strip() if self.kind.strip else raw
        if not text:
            return self.default_for(production)
        value = self.kind.parse(self.name, text)
        if value == ():  # a list of nothing (",") counts as unset too
            return self.default_for(production)
        return value


@dataclass(frozen=True)
class Section:
    """Variables that belong together, in the docs and in ``.env.example``."""

    title: str
    variables: tuple[Variable, ...]


def split_spec(spec: str) -> tuple[str, str]:
    """``package.module:attribute[.attribute]`` -> (module, attribute); ``ValueError``
    when ``spec`` is not of that form."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{spec!r} is not module:callable")
    return module_name, attribute


def import_object(module_name: str, attribute: str) -> Any:
    """The object a split spec names: ``ImportError`` when the module does not
    import, ``AttributeError`` when it lacks the (dotted) attribute."""
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target
