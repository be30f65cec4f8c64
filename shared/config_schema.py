"""Typed TOML tables -> frozen dataclasses, with errors that name the file, the key and the problem.

The schema *is* the dataclass: each field declares its type, default, documentation and checks
through :func:`setting`, so loading, validation, the commented TOML writer and the field
reference in docs/DEPLOY.md are all driven by one declaration and cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: A pure value check: returns a problem description, or "" when the value is fine.
Check = Callable[[Any], str]
#: A check that touches the file system; only run when ``check_files`` is true.
FileCheck = Callable[[Path], str]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file; ``key`` is dotted (``identify.threshold``)."""

    key: str
    message: str

    def render(self, path: Path) -> str:
        return f"{path}: {self.key}: {self.message}" if self.key else f"{path}: {self.message}"


class ConfigError(ValueError):
    """A configuration file is unreadable or invalid; lists every problem found, one per line."""

    def __init__(self, path: Path, problems: Sequence[Problem]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(self.path) for p in self.problems))


def setting(
    doc: str,
    default: Any = MISSING,
    *,
    check: Check | None = None,
    file_check: FileCheck | None = None,
    example: str = "",
) -> Any:
    """Declare a config field: its documentation, default, value check and file-system check.

    ``example`` is the TOML value shown (commented out) when an optional field is unset.
    """
    metadata = {"doc": doc, "check": check, "file_check": file_check, "example": example}
    if default is MISSING:
        return dataclasses.field(metadata=metadata)
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# --------------------------------------------------------------------------- value checks


def in_range(lo: float, hi: float, *, lo_open: bool = False) -> Check:
    """Numbers in [lo, hi] (or (lo, hi] with ``lo_open``); NaN and infinities are rejected."""

    def check(value: Any) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        bad_lo = value <= lo if lo_open else value < lo
        if bad_lo or value > hi:
            left = "(" if lo_open else "["
            return f"must be in {left}{lo}, {hi}], got {value}"
        return ""

    return check


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")
#: Linux ``sun_path`` holds 108 bytes including the terminating NUL.
_MAX_IPC_PATH = 107


def check_name(value: str) -> str:
    """Names that become file names and log fields: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME_RE.fullmatch(value):
        return (
            f"must be 1-64 characters of letters, digits, '.', '_' or '-' and start with a letter "
            f"or digit, got {value!r}"
        )
    return ""


def check_env_name(value: str) -> str:
    if _ENV_RE.fullmatch(value):
        return ""
    return f"is not a valid environment variable name: {value!r}"


def check_not_empty(value: Any) -> str:
    return "must not be empty" if len(value) == 0 else ""


@dataclass(frozen=True)
class Endpoint:
    """A parsed ZeroMQ endpoint: ``tcp://host:port`` or ``ipc:///absolute/path``."""

    transport: Literal["tcp", "ipc"]
    host: str
    port: int
    path: str

    @property
    def is_tcp(self) -> bool:
        return self.transport == "tcp"


class EndpointError(ValueError):
    """An endpoint string that ZeroMQ would reject or that cannot work as configured."""


def parse_endpoint(text: str, *, bind: bool) -> Endpoint:
    """Parse and validate a ZeroMQ endpoint; ``bind`` allows the wildcard host ``*``."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise EndpointError(f"expected 'tcp://HOST:PORT' or 'ipc:///PATH', got {text!r}")
    if scheme == "ipc":
        if not rest.startswith("/"):
            raise EndpointError(f"ipc endpoint needs an absolute path (ipc:///...), got {text!r}")
        if len(rest.encode()) > _MAX_IPC_PATH:
            raise EndpointError(f"ipc path is longer than {_MAX_IPC_PATH} bytes: {text!r}")
        return Endpoint("ipc", "", 0, rest)
    if scheme != "tcp":
        raise EndpointError(f"transport must be 'tcp' or 'ipc', got {scheme!r} in {text!r}")
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise EndpointError(f"expected 'tcp://HOST:PORT', got {text!r}")
    if not port_text.isdigit():
        raise EndpointError(f"port must be a number, got {port_text!r} in {text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise EndpointError(f"port {port} is out of range 1-65535 in {text!r}")
    if host == "*":
        if not bind:
            raise EndpointError(f"'*' is only valid for a listening endpoint, not {text!r}")
        return Endpoint("tcp", host, port, "")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise EndpointError(f"bad IPv6 address {host!r} in {text!r}") from None
        return Endpoint("tcp", host, port, "")
    if ":" in host:
        raise EndpointError(f"write IPv6 addresses in brackets (tcp://[::1]:PORT), got {text!r}")
    if not _HOST_RE.fullmatch(host):
        raise EndpointError(f"bad host name {host!r} in {text!r}")
    return Endpoint("tcp", host, port, "")


def endpoint(*, bind: bool) -> Check:
    """Check factory for endpoints that this component binds (listens on) or connects to."""

    def check(value: str) -> str:
        try:
            parse_endpoint(value, bind=bind)
        except EndpointError as exc:
            return str(exc)
        return ""

    return check


# --------------------------------------------------------------------------- file checks


def existing_file(path: Path) -> str:
    if not path.exists():
        return f"file {path} does not exist"
    return "" if path.is_file() else f"{path} is not a regular file"


def existing_dir(path: Path) -> str:
    if not path.exists():
        return f"directory {path} does not exist"
    return "" if path.is_dir() else f"{path} is not a directory"


# --------------------------------------------------------------------------- loading

_TOML_TYPE = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
              dict: "table"}


def _toml_type(value: Any) -> str:
    return _TOML_TYPE.get(type(value), type(value).__name__)


class _MismatchError(Exception):
    """Raised inside conversion; carries the message for a Problem."""


def _convert(tp: Any, raw: Any, key: str, base_dir: Path, problems: list[Problem]) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(raw, bool) or raw not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise _MismatchError(f"must be one of {options}, got {raw!r}")
        return raw
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        for option in options:
            try:
                return _convert(option, raw, key, base_dir, problems)
            except _MismatchError:
                continue
        names = " or ".join(_describe(o) for o in options)
        raise _MismatchError(f"expected {names}, got {_toml_type(raw)} {raw!r}")
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(raw, list):
            raise _MismatchError(f"expected an array, got {_toml_type(raw)} {raw!r}")
        items = []
        for i, item in enumerate(raw):
            try:
                items.append(_convert(item_tp, item, key, base_dir, problems))
            except _MismatchError as exc:
                raise _MismatchError(f"item {i}: {exc}") from None
        return tuple(items)
    if dataclasses.is_dataclass(tp):
        if not isinstance(raw, dict):
            raise _MismatchError(f"expected a table ([{key}]), got {_toml_type(raw)} {raw!r}")
        return _build(tp, raw, key, base_dir, problems)
    if tp is bool:
        if not isinstance(raw, bool):
            raise _MismatchError(f"expected true or false, got {_toml_type(raw)} {raw!r}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _MismatchError(f"expected an integer, got {_toml_type(raw)} {raw!r}")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _MismatchError(f"expected a number, got {_toml_type(raw)} {raw!r}")
        return float(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise _MismatchError(f"expected a string, got {_toml_type(raw)} {raw!r}")
        return raw
    if tp is Path:
        if not isinstance(raw, str):
            raise _MismatchError(f"expected a path string, got {_toml_type(raw)} {raw!r}")
        if not raw:
            raise _MismatchError("path must not be empty")
        return Path(os.path.normpath(base_dir / raw))
    raise TypeError(f"unsupported config field type {tp!r} for {key}")


def _describe(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            Path: "a path string"}.get(tp, str(tp))


def _build(cls: type[T], table: Mapping[str, Any], prefix: str, base_dir: Path,
           problems: list[Problem]) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, raw in table.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            where = f"[{prefix}]" if prefix else "the top level"
            problems.append(Problem(key, f"unknown key in {where}{hint} "
                                         f"(known: {', '.join(sorted(fields))})"))
            continue
        field = fields[name]
        try:
            value = _convert(hints[name], raw, key, base_dir, problems)
        except _MismatchError as exc:
            problems.append(Problem(key, str(exc)))
            continue
        check = field.metadata.get("check")
        message = _run_check(check, value)
        if message:
            problems.append(Problem(key, message))
            continue
        values[name] = value
    missing = False
    for name, field in fields.items():
        if name in values or name in table:
            continue
        if field.default is MISSING and field.default_factory is MISSING:
            key = f"{prefix}.{name}" if prefix else name
            table_type = dataclasses.is_dataclass(hints[name])
            problems.append(Problem(key, f"required table [{key}] is missing" if table_type
                                    else "required key is missing"))
            missing = True
    if missing or any(name not in values for name in table if name in fields):
        return _PARTIAL  # type: ignore[return-value]
    return cls(**values)


def _run_check(check: Check | None, value: Any) -> str:
    if check is None:
        return ""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        message = check(item)
        if message:
            return message
    return ""


#: Placeholder for a table that had problems; the loader raises before anyone sees it.
_PARTIAL = object()


def iter_file_checks(obj: Any, prefix: str = "") -> Iterator[tuple[str, FileCheck, Any]]:
    """Yield (dotted key, file check, value) for every set field that declares a file check."""
    for field in dataclasses.fields(obj):
        key = f"{prefix}.{field.name}" if prefix else field.name
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            yield from iter_file_checks(value, key)
            continue
        file_check = field.metadata.get("file_check")
        if file_check is None or value is None:
            continue
        for item in value if isinstance(value, tuple) else (value,):
            yield key, file_check, item


def load_toml(cls: type[T], path: str | os.PathLike[str], *, check_files: bool = True) -> T:
    """Load ``path`` into ``cls``; relative paths in the file are relative to its folder.

    Runs field checks, then ``cls.problems()`` (cross-field rules) if defined, then, when
    ``check_files`` is true, the file checks (existence, key file format and permissions).
    Raises :class:`ConfigError` listing every problem found.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, [Problem("", "configuration file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [Problem("", f"cannot read configuration file: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [Problem("", f"invalid TOML: {exc}")]) from None
    return build(cls, data, path, check_files=check_files)


def build(cls: type[T], data: Mapping[str, Any], path: Path, *, check_files: bool = True) -> T:
    """Like :func:`load_toml` for an already parsed table (``path`` names it in errors)."""
    path = Path(path)
    problems: list[Problem] = []
    obj = _build(cls, data, "", path.parent.absolute(), problems)
    if problems:
        raise ConfigError(path, problems)
    cross = getattr(obj, "problems", None)
    if cross is not None:
        problems.extend(cross())
    if check_files and not problems:
        for key, file_check, value in iter_file_checks(obj):
            message = file_check(value)
            if message:
                problems.append(Problem(key, message))
    if problems:
        raise ConfigError(path, problems)
    return obj


# --------------------------------------------------------------------------- writing


def _toml_value(value: Any, base_dir: Path | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Path):
        return _toml_string(_path_text(value, base_dir))
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v, base_dir) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _path_text(path: Path, base_dir: Path | None) -> str:
    """Paths inside the config's folder are written relative, so the folder can be moved;
    a relative path given here means relative to the current directory (as on a command
    line), so it is made absolute first -- never written as if relative to the config."""
    if base_dir is not None:
        path = path if path.is_absolute() else path.absolute()
        try:
            return path.relative_to(base_dir).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _comment(text: str, width: int = 96) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width - 2)] or ["#"]


def _default_text(field: dataclasses.Field[Any]) -> str:
    if field.default is not MISSING and field.default is not None:
        return _toml_value(field.default, None)
    return ""


def dump_toml(obj: Any, *, base_dir: Path | None = None, header: str = "") -> str:
    """Render a config dataclass as commented TOML that :func:`load_toml` reads back equal.

    Every key is preceded by its documentation; unset optional keys appear commented out.
    """
    lines: list[str] = [*_comment(header), ""] if header else []
    _dump_table(obj, "", base_dir, lines)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def _dump_table(obj: Any, prefix: str, base_dir: Path | None, lines: list[str]) -> None:
    tables = []
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            tables.append((field, value))
            continue
        doc = field.metadata.get("doc", "")
        default = _default_text(field)
        lines.extend(_comment(doc))
        if default:
            lines.append(f"# default: {default}")
        if value is None:
            example = field.metadata.get("example") or '""'
            lines.append(f"# {field.name} = {example}")
        else:
            lines.append(f"{field.name} = {_toml_value(value, base_dir)}")
        lines.append("")
    for field, value in tables:
        name = f"{prefix}.{field.name}" if prefix else field.name
        lines.extend(_comment(field.metadata.get("doc", "")))
        lines.append(f"[{name}]")
        _dump_table(value, name, base_dir, lines)


def reference_markdown(cls: type, prefix: str = "") -> str:
    """A Markdown table of every key of ``cls``: name, type, default, meaning (for the docs)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"] if not prefix else []
    hints = typing.get_type_hints(cls)
    nested = []
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}" if prefix else field.name
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            nested.append((key, tp))
            continue
        default = _default_text(field) if field.default is not MISSING else ""
        if field.default is MISSING and field.default_factory is MISSING:
            default = "*required*"
        elif field.default is None:
            default = "*unset*"
        cells = [f"`{key}`", _type_text(tp), default, field.metadata.get("doc", "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for key, tp in nested:
        rows.append(reference_markdown(tp, key))
    return "\n".join(rows)


def _type_text(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a).replace("'", '"') for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_text(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"array of {_type_text(typing.get_args(tp)[0])}"
    return {bool: "bool", int: "int", float: "float", str: "string", Path: "path"}.get(tp, str(tp))
