"""Running helm on the chart, and reading what it renders.

helm comes from `scripts/helm-bin.sh` (HELM_BIN_DIR, or a cached build from the Go
module proxy). Every call runs with its own HELM_*_HOME folders, so the user's
repositories, plugins and registry logins never play a part, and with a timeout.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT

CHART = ROOT / "charts" / "vllm-ep-webhook"
TIMEOUT = 120


def helm_binary() -> Path:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "helm-bin.sh")], stdout=subprocess.PIPE, text=True,
                          timeout=1800, check=True)
    return Path(done.stdout.strip().splitlines()[-1]) / "helm"


class HelmFailed(Exception):
    def __init__(self, args: list[str], code: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} exited {code}: {stderr}")
        self.code = code
        self.stderr = stderr


@dataclass
class Helm:
    binary: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
        env.update({
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            # No cluster unless a call passes --kubeconfig.
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        })
        return env

    def run(self, *args: str, timeout: float = TIMEOUT) -> str:
        done = subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env(), cwd=ROOT)
        if done.returncode != 0:
            raise HelmFailed(list(args), done.returncode, done.stderr)
        return done.stdout

    def values_file(self, values: dict[str, Any]) -> str:
        """A values file with `values` (a fresh one for every call)."""
        fd, path = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=self.home)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(values, f)
        return path

    def template(self, values: dict[str, Any] | None = None, *args: str, release: str = "ep",
                 namespace: str = "ml-system") -> list[dict[str, Any]]:
        """Every object `helm template` renders (test hooks included), in order."""
        out = self.run("template", release, str(CHART), "--namespace", namespace,
                       "--values", self.values_file(values or {}), *args)
        return parse(out)


def parse(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d]


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys: Kubernetes would keep one of them silently."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
