"""The pure core: an object and its kind's adapter in, a verdict out.

One way through: the kind's adapter reads the object into plain data
(`workload`), the planner decides the new values of the fields the webhook
owns (`planner`), and this module turns them into a JSON patch and the undo
record. `mutate` never performs I/O and never raises: every problem with the
object becomes a denial whose message says what is wrong and how to fix it.
Which adapter reads which kind is wired above the core (`webhook.admission.kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TypeVar

from webhook.vllm import flags
from webhook.core import patch
from webhook.core import shm
from webhook.core import undo
from webhook.vllm.command import find_ep_flag
from webhook.base.errors import Denied, NotApplicable
from webhook.core.planner import plan
from webhook.core.annotations import annotations_of, ENABLED, UNDO_RECORD, EpRequest, ep_enabled, read_ep_request
from webhook.core.options import Options
from webhook.core.verdict import Verdict
from webhook.core.workload import Adapter, Field, Launch, Workload

C = TypeVar("C")


def mutate(obj: object, adapter: Adapter[C], options: Options, context: C | None) -> Verdict:
    """Decide on one object that `adapter` reads: allow, allow with a patch, or deny.

    `context` is passed to the adapter as it is (None: unknown); for KServe's
    kinds it is the runtimes KServe could run the object with.
    """
    if options.mode == "optIn" and _not_asking(obj):
        return _ALLOW  # the common case when every InferenceService reaches the webhook
    try:
        return _mutate(obj, adapter, options, context)
    except Denied as denied:
        return Verdict.deny(denied.message)


_ALLOW = Verdict.allow()


def _not_asking(obj: object) -> bool:
    """Well-formed metadata without ep.enabled or the webhook's state: nothing to do in opt-in mode."""
    if not isinstance(obj, dict):
        return False
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return False
    annotations = metadata.get("annotations")
    if annotations is None:
        return True
    return isinstance(annotations, dict) and ENABLED not in annotations and UNDO_RECORD not in annotations


def _wants_ep(enabled: bool | None, options: Options) -> bool:
    """Whether EP should be on, given the annotation and the namespace's policy."""
    rule = f"policy rule {options.rule!r}"
    if options.mode == "forbid":
        if enabled:
            raise Denied(f"expert parallelism is forbidden in this namespace ({rule}); remove the ep.enabled annotation")
        return False
    if options.mode == "enforce":
        if enabled is False and not options.allow_opt_out:
            raise Denied(
                f'expert parallelism is required in this namespace ({rule}) and opting out is not allowed; '
                f'remove ep.enabled: "false"'
            )
        return enabled is not False
    return bool(enabled)


def _mutate(obj: object, adapter: Adapter[C], options: Options, context: C | None) -> Verdict:
    if not isinstance(obj, dict):
        raise Denied("the object is not a JSON object; expected an InferenceService")
    annotations = annotations_of(obj)
    enabled = ep_enabled(annotations)
    stored = undo.read(annotations)
    if options.models is not None and options.mode == "enforce" and enabled is not True \
            and not _enforced_for(obj, adapter, context, options):
        options = replace(options, mode="optIn")  # a model the enforce rule does not cover: as if opt-in
    want = _wants_ep(enabled, options)
    if not want:
        if stored is None and options.mode != "forbid":
            return Verdict.allow()
        return _turn_off(obj, adapter, annotations, stored, options)
    try:
        return _turn_on(obj, adapter(obj, context), annotations, stored, options)
    except NotApplicable as na:
        if enabled is None and options.mode == "enforce":
            # enforced by policy on an object that did not ask and cannot have it: pass untouched
            return Verdict.allow().with_warnings([f"EP not applied: {na.message}"])
        raise


def _enforced_for(obj: dict[str, object], adapter: Adapter[C], context: C | None, options: Options) -> bool:
    """Whether the object's model is one the enforce rule's `models` globs cover (`Options.enforces`); an object
    the adapter cannot read counts as covered, so that the usual path says what is wrong with it."""
    try:
        return options.enforces(adapter(obj, context).launch_models())
    except (Denied, NotApplicable):
        return True


def _values(fields: tuple[Field, ...]) -> dict[str, object]:
    return {f.pointer: f.value for f in fields}


def _owned(workload: Workload, stored: undo.Undo | None) -> tuple[Field, ...]:
    """The fields the webhook owns: always its `fields`; /dev/shm and env fields once the undo record holds them."""
    fields = workload.fields()
    if stored is None:
        return fields
    return fields + tuple(f for f in workload.optional_fields() if f.pointer in stored.pointers)


def _untouched(stored: undo.Undo | None, values: Mapping[str, object]) -> bool:
    """The fields are exactly as the webhook left them."""
    return stored is not None and stored.pointers == frozenset(values) and stored.applied == undo.digest(values)


def _turn_off(
    obj: dict[str, object], adapter: Adapter[C], annotations: Mapping[str, object], stored: undo.Undo | None,
    options: Options,
) -> Verdict:
    """Undo an earlier change if there is one; in forbid mode also refuse hand-written EP."""
    try:
        workload = adapter(obj, None)
    except NotApplicable:
        if stored is None:
            return Verdict.allow()
        raise
    fields = _owned(workload, stored)
    current = _values(fields)
    new, verdict = current, Verdict.allow()
    if stored is not None:
        if _untouched(stored, current):
            new = {p: stored.original(p) for p in current}
            verdict = _result(obj, fields, new, None).with_warnings(
                [f"EP is off: restored {workload.owned} the webhook had changed"]
            )
        else:
            verdict = _result(obj, fields, current, None).with_warnings(
                [f"EP is off; {workload.owned_short} were edited after the webhook changed them, "
                 f"so they stay as they are"]
            )
    if options.mode == "forbid":
        found = _ep_in(workload, new)
        if found:
            raise Denied(
                f"expert parallelism is forbidden in this namespace (policy rule {options.rule!r}), "
                f"but {found}; remove it"
            )
    return verdict


def running_ep(obj: object, adapter: Adapter[C]) -> bool:
    """Whether the object runs EP as it is now: a hand-written or webhook-written flag, or a
    multi-node `parallelism.expert` that the kind's preset renders into the flag."""
    if not isinstance(obj, dict):
        return False
    try:
        workload = adapter(obj, None)
        return _ep_in(workload, _values(workload.fields()), rendered_only=True) is not None
    except Denied:  # unreadable, or beyond a limit: no EP the webhook can see
        return False


def _launch_ep(launch: Launch, values: Mapping[str, object]) -> str | None:
    command, args = values.get(launch.command.pointer), values.get(launch.args.pointer)
    return find_ep_flag(
        tuple(command) if isinstance(command, list) else None, tuple(args) if isinstance(args, list) else None
    )


def _ep_in(workload: Workload, values: Mapping[str, object], rendered_only: bool = False) -> str | None:
    """Where EP is switched on, if anywhere. `rendered_only`: count `parallelism.expert` only where the
    kind's preset renders it (multi-node roles), i.e. where vLLM really gets the flag."""
    for role in workload.roles:
        if role.parallelism is not None and (role.layout == "multi" or not rendered_only):
            p = values.get(role.parallelism.pointer)
            if isinstance(p, dict) and p.get("expert") is True:
                return f"{role.parallelism.path}.expert is true"
        for launch in role.launches:
            found = _launch_ep(launch, values)
            if found:
                return f"the command sets {found}"
    return None


def _turn_on(
    obj: dict[str, object], workload: Workload, annotations: Mapping[str, object], stored: undo.Undo | None,
    options: Options,
) -> Verdict:
    fields = _owned(workload, stored)
    current = _values(fields)
    untouched_since = _untouched(stored, current)
    request = read_ep_request(annotations, options)
    reject = options.on_conflict == "reject"

    # Plan on the fields as deployed: fields the webhook wrote itself are never "hand-written
    # conflicts", and the warnings say what this write changes. On most updates that plan is the
    # only one: nothing changes.
    on_current = plan(workload, current, request, options, reject and not untouched_since)
    if on_current.values == current:
        # Already EP-configured for this request. If the webhook changed it earlier and
        # something else edited other fields since (another mutating webhook, a hand edit),
        # keep the original for undo and track the new digest.
        if stored is None or stored.pointers != frozenset(current) or untouched_since:
            return Verdict.allow()
        originals = {**dict(stored.fields), **_shm_originals(workload, stored, current, request, options)}
        return _result(obj, fields, current, undo.Undo(tuple(sorted(originals.items())), undo.digest(current)))

    # Something changes. While the webhook's last output is untouched, the new values come from the
    # stored originals, so that a new GPU request or TP gives a fresh layout (flags the webhook added
    # for annotations since removed go) and undo stays exact: the one path with a second plan.
    result = on_current
    base = current
    if stored is not None and untouched_since:
        base = {p: stored.original(p) for p in current}
        result = plan(workload, base, request, options, reject)
    elif stored is not None:  # edited since: the current values are the new originals, but for the webhook's /dev/shm
        base = {**current, **_shm_originals(workload, stored, current, request, options)}
    new = result.values
    # /dev/shm and env fields the plan changes for the first time join the owned fields, their values as found
    joining = () if len(new) == len(base) else tuple(
        f for f in workload.optional_fields() if f.pointer in new and f.pointer not in base)
    if joining:
        fields += joining
        base = {**base, **_values(joining)}
    notes = list(on_current.notes)
    if request.all2all_backend in flags.FALLBACK_ALL2ALL_BACKENDS:
        notes.append(
            f"all2all backend {request.all2all_backend} is deprecated in {flags.ALL2ALL_RELEASE}: "
            f"vLLM falls back to its default backend"
        )
    new_undo = None if new == base else undo.Undo(tuple(sorted(base.items())), undo.digest(new))
    return _result(obj, fields, new, new_undo).with_warnings([*on_current.warnings, *notes])


def _shm_originals(
    workload: Workload, stored: undo.Undo, current: Mapping[str, object], request: EpRequest, options: Options
) -> dict[str, object]:
    """The originals of the /dev/shm and env lists the webhook owns, after something edited the owned fields since it
    wrote them: a list as the webhook wrote it keeps its stored original; a list edited since is rebased on
    the edit (`shm.rebase`). Turning EP off then takes back the webhook's volume and mount, and nothing else."""
    pointers = stored.pointers.intersection(f.pointer for f in workload.optional_fields())
    if not pointers:
        return {}
    base = {p: stored.original(p) for p in current}
    try:
        written = plan(workload, base, request, options, False).values
    except Denied:
        return {p: current[p] for p in pointers}
    return {p: base[p] if current[p] == written.get(p) else shm.rebase(base[p], written.get(p), current[p])
            for p in pointers}


def _result(
    obj: dict[str, object], fields: tuple[Field, ...], new: Mapping[str, object], new_undo: undo.Undo | None
) -> Verdict:
    ops: list[dict[str, object]] = []
    changed: list[str] = []
    for field in fields:
        step = patch.set_value(field.pointer, field.value, new.get(field.pointer))
        if step:
            ops.extend(step)
            changed.append(field.path)
    state_ops = patch.set_annotation(obj, UNDO_RECORD, None if new_undo is None else undo.dump(new_undo))
    if state_ops:
        ops.extend(state_ops)
        changed.append(f"metadata.annotations[{UNDO_RECORD}]")
    return Verdict.patched(tuple(ops), tuple(changed))
