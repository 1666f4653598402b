"""Declared options: each protocol field's default, allowed values and range, written once.

``PreprocessConfig`` and ``MaskSpec`` declare their fields with :func:`option`; validation of a value
(:func:`check`) and the JSON Schema of the config (:func:`json_schema`) are generated from those
declarations, so the schema and the code cannot disagree.
"""

from __future__ import annotations

import dataclasses

_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def option(default, *, enum=None, minimum=None, maximum=None, exclusive_minimum=None, exclusive_maximum=None,
           doc: str = ""):
    """A dataclass field with its default, choices (``enum``) and bounds."""
    meta = {"enum": enum, "minimum": minimum, "maximum": maximum, "exclusiveMinimum": exclusive_minimum,
            "exclusiveMaximum": exclusive_maximum, "description": doc, "type": type(default)}
    return dataclasses.field(default=default, metadata={"option": meta})


def _declared(cls):
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def check(obj, what: str) -> None:
    """Raise ValueError naming ``what.field``, the value and what is allowed, for the first bad field."""
    for f, m in _declared(type(obj)):
        v = getattr(obj, f.name)
        t = m["type"]
        ok_type = isinstance(v, t) and not (t is not bool and isinstance(v, bool))
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            ok_type = True
        if not ok_type:
            raise ValueError(f"{what}.{f.name} must be of type {_TYPES.get(t, t.__name__)}, got {v!r}")
        if m["enum"] is not None and v not in m["enum"]:
            raise ValueError(f"{what}.{f.name} must be one of {list(m['enum'])}, got {v!r}")
        for key, bad, word in (("minimum", lambda a, b: a < b, ">="), ("maximum", lambda a, b: a > b, "<="),
                               ("exclusiveMinimum", lambda a, b: a <= b, ">"),
                               ("exclusiveMaximum", lambda a, b: a >= b, "<")):
            if m[key] is not None and bad(v, m[key]):
                raise ValueError(f"{what}.{f.name} must be {word} {m[key]}, got {v!r}")


def json_schema(cls) -> dict:
    """The JSON Schema (2020-12) object of a dataclass's declared options, defaults included."""
    props = {}
    for f, m in _declared(cls):
        p = {"type": _TYPES[m["type"]], "default": f.default}
        if m["type"] is float:
            p["type"] = "number"
        for key in ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if m[key] is not None:
                p[key] = list(m[key]) if key == "enum" else m[key]
        if m["description"]:
            p["description"] = m["description"]
        props[f.name] = p
    return {"type": "object", "additionalProperties": False, "properties": props}


def from_dict(cls, d: dict | None, what: str):
    """Build ``cls`` from a mapping, rejecting unknown keys with the list of known ones."""
    d = dict(d or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {', '.join(unknown)}; known: {', '.join(names)}")
    return cls(**d)
