"""Frozen-dataclass configurations <-> plain dicts and TOML, with one-line errors for bad keys.

`from_dict` builds a (nested) dataclass from a dict such as ``tomllib`` returns: unknown keys and
wrong types are errors naming the key; lists become tuples. `to_toml` writes one back.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

from burstkpn.errors import BurstKPNError


def from_dict(cls, values: dict, where: str = ""):
    """A ``cls`` instance from ``values``: missing keys keep their defaults; nested dataclasses recurse."""
    if not isinstance(values, dict):
        raise BurstKPNError(f"{where or 'config'}: expected a table, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:  # odd keys (quoted TOML keys may hold anything) are shown quoted, so the message stays one line
        shown = ", ".join(where + (k if k.isidentifier() else repr(k)) for k in unknown)
        raise BurstKPNError(f"unknown config key(s) {shown} (known: {', '.join(where + k for k in fields)})")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}{name}")
    return cls(**kwargs)


def _coerce(value, hint, key: str):
    """Check ``value`` against a simple type hint (bool/int/float/str, tuple[...]), converting lists."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise BurstKPNError(f"config key {key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args and (len(args) == 2 and args[1] is Ellipsis or len(set(args)) == 1) else None
        if args and args[-1] is not Ellipsis and len(args) != len(value):
            raise BurstKPNError(f"config key {key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, item, key) if item else v for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, float, str) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise BurstKPNError(f"config key {key}: expected {hint.__name__}, got {value!r}")
    return value


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; a missing or malformed file is a one-line error."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BurstKPNError(f"{path}: no such config file") from None
    except OSError as exc:  # a folder, unreadable, ...
        raise BurstKPNError(f"{path}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise BurstKPNError(f"{path}: malformed TOML (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BurstKPNError(f"{path}: malformed TOML ({exc})") from None


def to_dict(config) -> dict:
    """A dataclass as nested plain dicts (tuples become lists, as in TOML and JSON)."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(config))


def to_toml(config) -> str:
    """A (nested) dataclass as TOML text that `from_dict(read_toml(...))` reads back equal."""
    lines: list[str] = []

    def table(values: dict, prefix: str) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in values.items():
            if isinstance(v, dict):
                table(v, f"{prefix}.{k}" if prefix else k)

    table(to_dict(config), "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")
