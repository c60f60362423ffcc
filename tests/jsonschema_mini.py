"""A small JSON Schema validator for the subset bootree's schemas use (draft 2020-12 keywords).

Supported: ``type`` (one or a list), ``const``, ``enum``, ``pattern``, ``minimum``,
``required``, ``properties``, ``additionalProperties: false``, ``items``, and ``$ref`` to
``#/$defs/...``. An unsupported keyword is an error, so a schema cannot silently outgrow it.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}
_KNOWN = {"$schema", "$id", "title", "description", "$defs", "type", "const", "enum", "pattern", "minimum",
          "required", "properties", "additionalProperties", "items", "$ref"}


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def validate(doc: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "$") -> list[str]:
    """Every violation of ``schema`` by ``doc``, as ``path: what`` strings (empty: valid)."""
    root = schema if root is None else root
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"unsupported schema keywords at {path}: {sorted(unknown)}")
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        return validate(doc, root["$defs"][ref[len("#/$defs/"):]], root, path)
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(doc, t) for t in types):
            return [f"{path}: {doc!r} is not of type {'/'.join(types)}"]
    if "const" in schema and doc != schema["const"]:
        errors.append(f"{path}: {doc!r} is not {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} is not one of {schema['enum']!r}")
    if "pattern" in schema and isinstance(doc, str) and not re.search(schema["pattern"], doc):
        errors.append(f"{path}: {doc!r} does not match {schema['pattern']!r}")
    if "minimum" in schema and isinstance(doc, (int, float)) and doc < schema["minimum"]:
        errors.append(f"{path}: {doc!r} is below {schema['minimum']}")
    if isinstance(doc, dict):
        errors += [f"{path}: missing key {k!r}" for k in schema.get("required", []) if k not in doc]
        props = schema.get("properties", {})
        for key, value in doc.items():
            if key in props:
                errors += validate(value, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected key {key!r}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            errors += validate(item, schema["items"], root, f"{path}[{i}]")
    return errors
