"""The other containers of the pods KServe builds: those the webhook never edits but the policy must read."""

from __future__ import annotations

from webhook.base.jsonvalues import strings_or_none
from webhook.core.workload import Field, Launch


def other_launches(containers: object, pointer: str, where: str, skip: int | None = None) -> tuple[Launch, ...]:
    """Each container of `containers` (a pod's list, at `pointer` / `where`) but the one at `skip`, as a launch
    the policy reads (`webhook.core.started`); malformed entries are left to the API server's validation."""
    if not isinstance(containers, list):
        return ()
    out: list[Launch] = []
    for i, c in enumerate(containers):
        if i == skip or not isinstance(c, dict):
            continue
        image = c.get("image")
        out.append(Launch(
            f"{where}[{i}]",
            Field(f"{pointer}/{i}/command", f"{where}[{i}].command", list(strings_or_none(c.get("command")) or ()) or None),
            Field(f"{pointer}/{i}/args", f"{where}[{i}].args", list(strings_or_none(c.get("args")) or ()) or None),
            own_image=True,
            image=image if isinstance(image, str) else "",
            container=c,
        ))
    return tuple(out)
