"""The all2all backend in the container's env, on the vLLM releases that read it from there.

How a release takes the backend is `releases.Profile.all2all_by` (vllm/envs.py and vllm/config/parallel.py of each
release, ../shared/vllm/README.md):

- `env` (before 0.11.1: no `--all2all-backend` flag): the webhook writes `VLLM_ALL2ALL_BACKEND=<backend>` into the
  container's `env` (replacing the value of an entry already there) and no flag;
- `flag-else-env` (0.11.1-0.13) and `flag` (0.16+): the flag alone decides; the env is left as it is;
- `env-over-flag` (0.14-0.15: a set env overrides the flag): the flag is written, and an entry of the env that
  names another backend is set to the asked one (an absent env needs nothing).

An entry whose value is known only at run time (`valueFrom`, or `$(VAR)` that the kubelet expands) may name any
backend: the webhook cannot align it and denies, saying to remove it. The container's `env` joins the fields the
webhook owns only when it changes (`Workload.optional_fields`), so the undo record restores it exactly.
"""

from __future__ import annotations

from webhook.base.errors import Denied
from webhook.core.annotations import ALL2ALL_BACKEND
from webhook.core.workload import Launch
from webhook.vllm.releases import ALL2ALL_ENV, All2AllBy

WRITES_ENV: frozenset[All2AllBy] = frozenset({"env", "env-over-flag"})
"""The ways of taking the backend under which the webhook may have to write the env."""


def plan(launches: tuple[Launch, ...], out: dict[str, object], backend: str, by: All2AllBy, shown: str, how: str,
         warnings: list[str]) -> None:
    """Set `VLLM_ALL2ALL_BACKEND` to `backend` in each launch's container env where vLLM release `shown` (`how`:
    where that comes from, for messages), taking the backend `by` that way, would otherwise run another backend.

    `out` holds the values planned so far by JSON pointer; an env not in it is read from the object
    (`Launch.env_list`). A changed env is set in `out`, and a warning names it. Denied when an entry's value is
    known only at run time.
    """
    if by not in WRITES_ENV:
        return
    for launch in launches:
        field = launch.env_field()
        env = out.get(field.pointer, field.value)
        if env is not None and not isinstance(env, list):
            continue  # not a container's env: the API server's schema refuses it
        entries = env or []
        named = [i for i, item in enumerate(entries) if isinstance(item, dict) and item.get("name") == ALL2ALL_ENV]
        for i in named:
            item = entries[i]
            value = item.get("value")
            if "valueFrom" in item or not isinstance(value, str) or "$(" in value:
                raise Denied(_unknown(launch.where, backend, by, shown, how))
        if by == "env-over-flag" and not named:
            continue  # the flag decides
        if named and all(entries[i].get("value") == backend for i in named):
            continue
        new = [{**item, "value": backend} if i in named else item for i, item in enumerate(entries)]
        if not named:
            new.append({"name": ALL2ALL_ENV, "value": backend})
        out[field.pointer] = new
        why = "reads the backend from it" if by == "env" else "it overrides the flag"
        warnings.append(f"set env {ALL2ALL_ENV}={backend} in {launch.where} (vLLM {shown}: {why})")


def _unknown(where: str, backend: str, by: All2AllBy, shown: str, how: str) -> str:
    source = "from a ConfigMap, Secret, field or $(VAR) the webhook cannot read"
    if by == "env-over-flag":
        return (f"on vLLM {shown} ({how}) the container's env {ALL2ALL_ENV} ({where}, set {source}) overrides "
                f"--all2all-backend {backend}: remove that env or set it to {backend}")
    return (f"vLLM {shown} ({how}) reads the all2all backend from env {ALL2ALL_ENV}, which {where} sets {source}: "
            f"remove that entry (the webhook then writes {ALL2ALL_ENV}={backend}) or remove {ALL2ALL_BACKEND}")
