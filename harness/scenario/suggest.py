""""Did you mean": the keys a scenario allows where an unknown one was written, read from the
scenario's JSON Schema (every alternative of a union counted), and the close matches among
them."""

from __future__ import annotations

import difflib
from functools import cache


@cache
def _schema() -> dict:
    from harness.scenario.model import json_schema

    return json_schema()


def _resolve(node: dict, root: dict) -> list[dict]:
    """`node` and every alternative it stands for ($ref, anyOf, oneOf, allOf), flattened."""
    found, todo = [], [node]
    while todo:
        item = todo.pop()
        if not isinstance(item, dict):
            continue
        ref = item.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            todo.append(root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {}))
        for key in ("anyOf", "oneOf", "allOf"):
            todo.extend(item.get(key) or ())
        if "items" in item:
            todo.append(item["items"])
        if isinstance(item.get("additionalProperties"), dict):  # a mapping of names to
            todo.append(item["additionalProperties"])  # items (endpoints): the items' keys
        todo.extend((item.get("patternProperties") or {}).values())
        found.append(item)
    return found


def allowed_keys(keys: list[str]) -> list[str]:
    """The keys allowed in the mapping at `keys` (the path of mapping keys from the top)."""
    root = _schema()
    nodes = _resolve(root, root)
    for key in keys:
        children = [node["properties"][key] for node in nodes
                    if key in (node.get("properties") or {})]
        if not children:  # pydantic's tag of a union's member, not a key: stay put
            continue
        nodes = [n for child in children for n in _resolve(child, root)]
    return sorted({name for node in nodes for name in node.get("properties") or {}})


def did_you_mean(loc: tuple) -> str:
    """`, did you mean 'backends'?` for an unknown key at `loc` (pydantic's location), or ''."""
    keys = [item for item in loc if isinstance(item, str)]
    if not keys:
        return ""
    wrong, parents = keys[-1], keys[:-1]
    allowed = allowed_keys(parents)
    close = difflib.get_close_matches(wrong, allowed, n=2, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{name}'" for name in close) + "?"
