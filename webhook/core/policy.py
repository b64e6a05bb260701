"""Cluster-wide policy: where EP is opt-in, enforced or forbidden.

A policy file has `defaults` and an ordered list of `rules`; the first rule
whose selectors match a namespace wins and overrides only the keys it sets.
Parsing validates everything up front and names the bad field
(`rules[1].mode: ...`), so a typo never silently becomes a default.

    defaults:
      mode: optIn              # optIn | enforce | forbid
      allowOptOut: true        # enforce: may an InferenceService say ep.enabled: "false"?
      onConflict: override     # override | reject
      tensorParallelSize: 1
      maxDataParallelSize: 64
      gpuResources: [nvidia.com/gpu, ...]
      gpuDeviceClasses: [gpu.nvidia.com, gpu.amd.com, gpu.intel.com]  # DRA DeviceClasses that are GPUs
      all2allBackends: [...]   # names allowed in ep.all2all-backend
      vllmVersion: "0.11.2"    # the vLLM pods run when neither ep.vllm-version nor the image says
      unknownLaunches: deny    # forbid/enforce when EP cannot be read (run-time values, files): deny | warn
      sharedMemory: add        # add | warn | off: a memory /dev/shm for pods running TP x DP > 1
      sharedMemorySize: 8Gi    # its sizeLimit (a Kubernetes quantity)
      models: ["hf://deepseek-ai/*", "*mixtral*"]  # enforce: only for these models (globs, any case)
    rules:
      - name: production       # optional, shown in messages
        namespaces: ["prod-*"] # names or globs
        namespaceSelector:     # Kubernetes label selector
          matchLabels: {team: ml}
          matchExpressions: [{key: tier, operator: In, values: [gpu]}]
        mode: enforce

A rule with both `namespaces` and `namespaceSelector` needs both to match.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import yaml

from webhook.vllm.flags import ALL2ALL_BACKENDS, ALL2ALL_RELEASE
from webhook.core.options import MODES, ON_CONFLICT, SHARED_MEMORY_MODES, UNKNOWN, Options
from webhook.core.shm import quantity
from webhook.vllm.releases import parse_version

_KEYS = {
    "mode": "mode",
    "allowOptOut": "allow_opt_out",
    "onConflict": "on_conflict",
    "tensorParallelSize": "tensor_parallel_size",
    "maxDataParallelSize": "max_data_parallel_size",
    "gpuResources": "gpu_resources",
    "gpuDeviceClasses": "gpu_device_classes",
    "all2allBackends": "all2all_backends",
    "vllmVersion": "vllm_version",
    "sharedMemory": "shared_memory",
    "sharedMemorySize": "shared_memory_size",
    "models": "models",
}
_DEVICE_CLASS = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_RULE_ONLY = {"name", "namespaces", "namespaceSelector"}
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_RESOURCE_NAME = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


class PolicyError(ValueError):
    """An invalid policy; the message names the field."""


@dataclass(frozen=True)
class Requirement:
    """One label-selector requirement (matchLabels entries become `In` requirements)."""
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy the requirement, as Kubernetes evaluates it."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class Rule:
    """A policy rule: which namespaces it selects and the options it overrides."""
    name: str
    namespaces: tuple[str, ...] | None
    selector: tuple[Requirement, ...] | None
    overrides: Mapping[str, object]

    @property
    def uses_labels(self) -> bool:
        """Whether the rule needs namespace labels to decide."""
        return self.selector is not None

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Whether the rule selects this namespace."""
        if self.namespaces is not None and not any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces):
            return False
        if self.selector is not None and not all(r.matches(labels) for r in self.selector):
            return False
        return True


@dataclass(frozen=True)
class Policy:
    """Defaults and ordered rules; the first matching rule wins."""
    defaults: Options
    rules: tuple[Rule, ...] = ()
    rule_options: tuple[Options, ...] = field(init=False, repr=False, compare=False)
    """Each rule's effective options (the defaults with its overrides), made once when the policy is built."""

    def __post_init__(self) -> None:
        options = tuple(replace(self.defaults, rule=r.name, **r.overrides) for r in self.rules)  # type: ignore[arg-type]
        object.__setattr__(self, "rule_options", options)  # a frozen dataclass's own derived field

    @property
    def opt_in_only(self) -> bool:
        """True when no namespace can be in enforce or forbid mode."""
        return self.defaults.mode == "optIn" and all(r.overrides.get("mode", "optIn") == "optIn" for r in self.rules)

    @property
    def uses_labels(self) -> bool:
        """Whether any rule needs namespace labels."""
        return any(r.uses_labels for r in self.rules)

    def options_for(self, namespace: str, labels: Mapping[str, str] | None) -> Options:
        """The effective options; `labels` None means the namespace's labels are unknown."""
        for rule, options in zip(self.rules, self.rule_options):
            if rule.uses_labels and labels is None:
                raise LabelsUnknown(namespace)
            if rule.matches(namespace, labels or {}):
                return options
        return self.defaults


class LabelsUnknown(Exception):
    """A label-selector rule must be evaluated, but the namespace's labels are not known."""


DEFAULT = Policy(Options())


# -- parsing ---------------------------------------------------------------------------------


def _expect(cond: bool, field: str, message: str) -> None:
    if not cond:
        raise PolicyError(f"{field}: {message}")


def _strings(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{field}: must be a list of non-empty strings")
    _expect(bool(value), field, "must not be empty")
    return tuple(str(v) for v in value)


def _settings(data: Mapping[str, object], where: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        field = f"{where}.{key}"
        if key not in _KEYS:
            continue
        if key == "mode":
            _expect(value in MODES, field, f"must be one of {', '.join(MODES)}, not {value!r}")
        elif key == "allowOptOut":
            _expect(isinstance(value, bool), field, "must be true or false")
        elif key == "onConflict":
            _expect(value in ON_CONFLICT, field, f"must be {' or '.join(ON_CONFLICT)}, not {value!r}")
        elif key in ("tensorParallelSize", "maxDataParallelSize"):
            _expect(isinstance(value, int) and not isinstance(value, bool) and value >= 1, field,
                    "must be a whole number of at least 1")
        elif key == "gpuResources":
            names = _strings(value, field)
            for n in names:
                _expect(bool(_RESOURCE_NAME.fullmatch(n)), field, f"{n!r} is not a resource name")
            value = names
        elif key == "gpuDeviceClasses":
            names = _strings(value, field)
            for n in names:
                _expect(len(n) <= 253 and bool(_DEVICE_CLASS.fullmatch(n)), field, f"{n!r} is not a DeviceClass name (a DNS subdomain)")
            value = names
        elif key == "all2allBackends":
            names = _strings(value, field)
            unknown = [n for n in names if n not in ALL2ALL_BACKENDS]
            if unknown:
                raise PolicyError(
                    f"{field}: unknown backend {unknown[0]!r}; {ALL2ALL_RELEASE} accepts {', '.join(ALL2ALL_BACKENDS)}"
                )
            value = names
        elif key == "unknownLaunches":
            _expect(value in UNKNOWN, field, f"must be {' or '.join(UNKNOWN)}, not {value!r}")
        elif key == "vllmVersion":
            version = parse_version(value) if isinstance(value, str) and len(value) < 40 else None
            _expect(version is not None, field, 'must be a vLLM release number in quotes, e.g. "0.11.2"')
            value = version
        elif key == "sharedMemory":
            _expect(value in SHARED_MEMORY_MODES, field,
                    f"must be one of {', '.join(SHARED_MEMORY_MODES)}, not {value!r}")
        elif key == "models":
            value = _strings(value, field)
            for g in value:
                _expect(len(g) <= 256, field, f"{g[:40]!r}... is longer than 256 characters")
        elif key == "sharedMemorySize":
            size = quantity(value) if isinstance(value, str) else None
            _expect(size is not None and size >= 1024 ** 2, field,
                    'must be a Kubernetes quantity of at least 1Mi in quotes, e.g. "8Gi"')
        out[_KEYS[key]] = value
    return out


def _selector(value: object, field: str) -> tuple[Requirement, ...]:
    if not isinstance(value, dict):
        raise PolicyError(f"{field}: must be a label selector with matchLabels and/or matchExpressions")
    extra = sorted(set(value) - {"matchLabels", "matchExpressions"})
    if extra:
        raise PolicyError(f"{field}.{extra[0]}: unknown key; use matchLabels or matchExpressions")
    reqs: list[Requirement] = []
    labels = value.get("matchLabels", {}) or {}
    _expect(isinstance(labels, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()),
            f"{field}.matchLabels", "must map label keys to string values (quote numbers and booleans)")
    for k, v in labels.items():
        reqs.append(Requirement(k, "In", (v,)))
    exprs = value.get("matchExpressions", []) or []
    _expect(isinstance(exprs, list), f"{field}.matchExpressions", "must be a list")
    for i, e in enumerate(exprs):
        ef = f"{field}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            raise PolicyError(f"{ef}: must be an object with key, operator and values")
        key, op, values = e.get("key"), e.get("operator"), e.get("values", [])
        _expect(isinstance(key, str) and bool(key), f"{ef}.key", "must be a non-empty string")
        _expect(op in _OPERATORS, f"{ef}.operator", f"must be one of {', '.join(_OPERATORS)}, not {op!r}")
        if op in ("In", "NotIn"):
            vals = _strings(values, f"{ef}.values")
        else:
            _expect(not values, f"{ef}.values", f"must be empty for {op}")
            vals = ()
        reqs.append(Requirement(str(key), op, vals))  # type: ignore[arg-type]
    _expect(bool(reqs), field, "selects nothing; give matchLabels or matchExpressions")
    return tuple(reqs)


def parse(text: str) -> Policy:
    """Parse and validate a policy document. Raises PolicyError naming the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"policy: not valid YAML: {e}") from None
    if data is None:
        data = {}
    _expect(isinstance(data, dict), "policy", "must be a mapping with defaults and rules")
    unknown = sorted(set(data) - {"defaults", "rules"})
    if unknown:
        raise PolicyError(f"policy.{unknown[0]}: unknown key; use defaults and rules")
    raw_defaults = data.get("defaults") or {}
    _expect(isinstance(raw_defaults, dict), "defaults", "must be a mapping")
    bad = sorted(set(raw_defaults) - set(_KEYS))
    if bad:
        raise PolicyError(f"defaults.{bad[0]}: unknown key; known keys: {', '.join(_KEYS)}")
    defaults = replace(Options(), **_settings(raw_defaults, "defaults"))  # type: ignore[arg-type]
    raw_rules = data.get("rules") or []
    _expect(isinstance(raw_rules, list), "rules", "must be a list")
    rules: list[Rule] = []
    for i, r in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            raise PolicyError(f"{where}: must be a mapping")
        bad = sorted(set(r) - set(_KEYS) - _RULE_ONLY)
        if bad:
            raise PolicyError(f"{where}.{bad[0]}: unknown key; known keys: {', '.join([*sorted(_RULE_ONLY), *_KEYS])}")
        _expect("namespaces" in r or "namespaceSelector" in r, where, "needs namespaces and/or namespaceSelector")
        name = r.get("name", where)
        _expect(isinstance(name, str) and bool(name), f"{where}.name", "must be a non-empty string")
        namespaces = _strings(r["namespaces"], f"{where}.namespaces") if "namespaces" in r else None
        selector = _selector(r["namespaceSelector"], f"{where}.namespaceSelector") if "namespaceSelector" in r else None
        settings = _settings(r, where)
        mode = settings.get("mode", defaults.mode)
        _expect("models" not in settings or mode == "enforce", f"{where}.models",
                f"applies to mode enforce only (this rule's mode is {mode}): remove it or set mode: enforce")
        rules.append(Rule(str(name), namespaces, selector, settings))
    return Policy(defaults, tuple(rules))

