"""Reads template.yaml and resolves the intrinsics it uses, so the local stack and the tests
build exactly the resources the template declares (it is the only description of them)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
ACCOUNT = "123456789012"
REGION = "us-east-1"


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags turned into their long form."""


def _construct(tag: str) -> Any:
    name = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def build(loader: _Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return build


for _tag in (
    "Ref",
    "GetAtt",
    "Sub",
    "If",
    "FindInMap",
    "Equals",
    "Join",
    "Select",
    "Not",
    "And",
    "Or",
    "Split",
    "Condition",
):
    _Loader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    return data


@dataclass
class Resolver:
    """Resolves Ref, GetAtt, Sub, If, FindInMap, Equals, Join, Select, Split, Not, And, Or and Condition
    against local values."""

    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # logical id -> what !Ref gives
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, spec in self.template.get("Parameters", {}).items():
            self.parameters.setdefault(name, str(spec.get("Default", "")))
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "tarefa-local",
            "AWS::Partition": "aws",
        }

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        ((key, arg),) = value.items()
        if key == "Ref":
            return self._ref(arg)
        if key == "Fn::GetAtt":
            logical, attribute = arg
            return self._attribute(logical, attribute)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::If":
            name, yes, no = arg
            return self.resolve(yes if self.condition(name) else no)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if key == "Fn::FindInMap":
            mapping, top, second = self.resolve(arg)
            return self.template["Mappings"][mapping][top][second]
        if key == "Fn::Join":
            separator, items = arg
            return separator.join(str(v) for v in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            separator, text = self.resolve(arg)
            return str(text).split(str(separator))
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        return {key: self.resolve(arg)}

    def exists(self, spec: dict[str, Any]) -> bool:
        """Whether a resource (or output) is created: its Condition, if any, holds."""
        return "Condition" not in spec or self.condition(spec["Condition"])

    def _attribute(self, logical: str, attribute: str) -> str:
        """An emulated resource's attribute; a placeholder for one the local stack does not run
        (e.g. the ElastiCache endpoint, which REDIS_URL replaces)."""
        if (logical, attribute) in self.attributes:
            return self.attributes[(logical, attribute)]
        if logical in self.template.get("Resources", {}):
            return f"local-{logical}-{attribute}"
        raise KeyError(f"no resource {logical} in the template")

    def _ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.refs[name]

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in extra:
                return str(extra[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return self._attribute(logical, attribute)
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


def schedule_input(properties: dict[str, Any]) -> dict[str, Any]:
    raw = properties.get("Input")
    return json.loads(raw) if raw else {}
