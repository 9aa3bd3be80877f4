"""Scenario text read as YAML, safely and within limits (harness.scenario.loader's first step).
Its own module: a cell on an interpreter without PyYAML is sent JSON and never imports it."""

from __future__ import annotations

import yaml

from harness.core.errors import ScenarioError, brief
from harness.scenario.loader import MAX_DEPTH, MAX_INT_CHARS, MAX_NODES, _one_line

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster, same YAML


class _UniqueKeyLoader(_Base):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one, and
    turns the constructors' own exceptions (a date in month 13, an integer of 5 000 digits)
    into YAML errors with a line."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):  # `!!map [a]`
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found a {node.id}", node.start_mark)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value, not a list or mapping",
                    key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {brief(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer too long ({len(node.value)} characters)", node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:  # whatever a constructor raises on odd input
            kind = node.tag.rpartition(":")[2] or "value"
            shown = brief(node.value) if isinstance(node.value, str) else node.id
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {kind}: {shown}", node.start_mark) from None

    def construct_document(self, node):
        try:
            return super().construct_document(node)
        except yaml.YAMLError:
            raise
        except Exception:  # collections are filled here, after construct_object returned
            raise yaml.constructor.ConstructorError(
                None, None, "cannot build the document", node.start_mark) from None


_YAML_PROBLEMS = {
    "second occurrence": "duplicate anchor",
    "exceeded maximum nesting depth": f"nested more than {MAX_DEPTH} levels deep",
    "but found another document": "a second document (---): one scenario per file",
}


def _check_shape(text: str, path: str) -> None:
    """Walk the YAML events (a flat stream, no recursion) before anything is built: bounded
    nesting keeps the recursive composer and the validators far from the recursion limit,
    bounded node count keeps construction and validation fast."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.NodeEvent):  # scalars, aliases, collection starts
            nodes += 1
            if nodes > MAX_NODES:
                raise ScenarioError(path, f"line {event.start_mark.line + 1}",
                                    f"more than {MAX_NODES} values (a scenario needs a few dozen)")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ScenarioError(path, f"line {event.start_mark.line + 1}",
                                    f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1



def load_yaml(text: str, path: str) -> object:
    """The YAML's data; anything wrong is a ScenarioError naming the line."""
    try:
        _check_shape(text, path)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark else "yaml"
        problem = exc.problem or exc.context or "invalid YAML"
        problem = _YAML_PROBLEMS.get(problem, problem)  # libyaml's wording, where unclear
        raise ScenarioError(path, line, _one_line(problem)) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, "", _one_line(f"invalid YAML: {exc}")) from None
