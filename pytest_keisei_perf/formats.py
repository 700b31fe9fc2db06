"""The three file formats (baseline, ``--perf-json`` report, history line), each checked by one
validator: its JSON Schema, shipped in ``schemas/`` and published in the docs.

The allowed runtime packages hold no JSON Schema library, so this module interprets the small
part of draft 2020-12 that the schemas use, and refuses a schema that uses any other keyword
(a rule it cannot check must not read as checked). ``tests/test_formats.py`` runs it against the
``jsonschema`` reference implementation on real files and on a corpus of broken ones.

One rule goes beyond JSON Schema: a number must be finite. JSON has no infinities, but Python's
parser turns an out-of-range literal such as ``1e400`` into one.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, Final, Literal

__all__ = ["FORMATS", "Format", "SchemaError", "check_supported", "first_problem", "problems", "schema"]

Format = Literal["baseline", "report", "history-line"]
FORMATS: Final[tuple[Format, ...]] = ("baseline", "report", "history-line")

#: Keywords that only describe; they constrain nothing.
_ANNOTATIONS: Final = frozenset({"$schema", "$id", "title", "description"})
#: Keywords this module checks. A schema using any other keyword is refused at load.
_CHECKED: Final = frozenset(
    {
        "type", "const", "enum", "required", "properties", "additionalProperties", "items", "minItems",
        "maxItems", "minLength", "minProperties", "minimum", "exclusiveMinimum", "allOf", "oneOf", "if",
        "then", "$ref", "$defs",
    }
)  # fmt: skip
_TYPE_WORDS: Final = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


_PYTHON_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "object": dict,
    "array": list,
    "string": str,
    "number": (int, float),
}


class SchemaError(RuntimeError):
    """A shipped schema uses a keyword this module does not check: a packaging bug, not bad input."""


@functools.cache
def schema(kind: Format) -> Mapping[str, Any]:
    """The JSON Schema of ``kind``, read from the package and checked for unknown keywords."""
    text = resources.files(__package__).joinpath(f"schemas/{kind}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    check_supported(loaded, kind)
    return loaded


def check_supported(node: Any, where: str) -> None:
    """Raise :class:`SchemaError` if the schema ``node`` uses a keyword this module does not
    check, or a ``$ref`` outside its own ``$defs``."""
    if not isinstance(node, dict):
        return
    unknown = set(node) - _CHECKED - _ANNOTATIONS
    if unknown:
        raise SchemaError(f"schema {where} uses {sorted(unknown)}, which keisei-perf does not check")
    if "$ref" in node and not str(node["$ref"]).startswith("#/$defs/"):
        raise SchemaError(f"schema {where}: $ref {node['$ref']!r} is not a local #/$defs/ reference")
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            check_supported(sub, f"{where}/{key}/{name}")
    for key in ("additionalProperties", "items", "if", "then"):
        if isinstance(node.get(key), dict):
            check_supported(node[key], f"{where}/{key}")
    for key in ("allOf", "oneOf"):
        for i, sub in enumerate(node.get(key, [])):
            check_supported(sub, f"{where}/{key}/{i}")


def problems(kind: Format, document: Any) -> list[str]:
    """Every way ``document`` breaks the ``kind`` format, each naming where: ``runs[0].threads
    must be a whole number or null, got '1'``. Empty when it is valid."""
    return list(_problems(kind, document))


def first_problem(kind: Format, document: Any) -> str | None:
    """The first of :func:`problems` (the rest are not looked for), or None for a valid document."""
    return next(_problems(kind, document), None)


def _problems(kind: Format, document: Any) -> Iterator[str]:
    root = schema(kind)
    return _Check(root).errors(document, root, "")


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name == "integer":  # JSON Schema: 2.0 is an integer
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, _PYTHON_TYPES[name])


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    comparable = type(a) is type(b) or (_is_type(a, "number") and _is_type(b, "number"))
    return comparable and bool(a == b)


def _condition(node: Mapping[str, Any]) -> str:
    """An ``if`` in words: ``kind is 'ab'`` for the constant properties the schemas test."""
    properties = node.get("properties", {})
    tests = [f"{name} is {sub['const']!r}" for name, sub in properties.items() if "const" in sub]
    return " and ".join(tests) or "its condition holds"


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _at(where: str) -> str:
    return where or "the document"


class _Check:
    """One validation of one document against one root schema (for its ``$ref``\\ s)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def valid(self, value: Any, node: Mapping[str, Any]) -> bool:
        return next(self.errors(value, node, ""), None) is None

    def errors(self, value: Any, node: Mapping[str, Any], where: str) -> Iterator[str]:
        if "$ref" in node:
            yield from self.errors(value, self._resolve(node["$ref"]), where)
        if "type" in node:
            names = node["type"] if isinstance(node["type"], list) else [node["type"]]
            if not any(_is_type(value, n) for n in names):
                words = " or ".join(_TYPE_WORDS[n] for n in names)
                yield f"{_at(where)} must be {words}, got {value!r}"
                return
        if _is_type(value, "number") and not math.isfinite(value):
            yield f"{_at(where)} must be a finite number, got {value!r}"
            return
        if "const" in node and not _equal(value, node["const"]):
            yield f"{_at(where)} must be {node['const']!r}, got {value!r}"
        if "enum" in node and not any(_equal(value, option) for option in node["enum"]):
            options = ", ".join(repr(o) for o in node["enum"])
            yield f"{_at(where)} must be one of {options}, got {value!r}"
        if isinstance(value, dict):
            yield from self._object(value, node, where)
        if isinstance(value, list):
            yield from self._array(value, node, where)
        if isinstance(value, str) and len(value) < node.get("minLength", 0):
            yield f"{_at(where)} must be at least {node['minLength']} character(s) long, got {value!r}"
        if _is_type(value, "number"):
            yield from self._number(value, node, where)
        for sub in node.get("allOf", []):
            yield from self.errors(value, sub, where)
        if "oneOf" in node:
            matching = sum(self.valid(value, sub) for sub in node["oneOf"])
            if matching != 1:
                yield f"{_at(where)} must match exactly one of {len(node['oneOf'])} forms, got {value!r}"
        if "if" in node and "then" in node and self.valid(value, node["if"]):
            when = _condition(node["if"])
            yield from (f"{problem} (when {when})" for problem in self.errors(value, node["then"], where))

    def _object(self, value: dict[str, Any], node: Mapping[str, Any], where: str) -> Iterator[str]:
        for name in node.get("required", []):
            if name not in value:
                yield f"{_at(where)} lacks {name!r}"
        if len(value) < node.get("minProperties", 0):
            yield f"{_at(where)} must hold at least {node['minProperties']} entr(ies), got {len(value)}"
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                yield from self.errors(item, properties[name], _key(where, name))
            elif isinstance(extra, dict):
                yield from self.errors(item, extra, f"{where}[{name!r}]")
            elif extra is False:
                yield f"{_at(where)} holds {name!r}, which the format does not allow"

    def _array(self, value: list[Any], node: Mapping[str, Any], where: str) -> Iterator[str]:
        if len(value) < node.get("minItems", 0):
            yield f"{_at(where)} must hold at least {node['minItems']} item(s), got {len(value)}"
        if "maxItems" in node and len(value) > node["maxItems"]:
            yield f"{_at(where)} must hold at most {node['maxItems']} item(s), got {len(value)}"
        if isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                yield from self.errors(item, node["items"], f"{where}[{i}]")

    @staticmethod
    def _number(value: float, node: Mapping[str, Any], where: str) -> Iterator[str]:
        if "minimum" in node and value < node["minimum"]:
            yield f"{_at(where)} must be at least {node['minimum']}, got {value!r}"
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            yield f"{_at(where)} must be above {node['exclusiveMinimum']}, got {value!r}"

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self._root["$defs"][ref.removeprefix("#/$defs/")]
        return found
