"""The pure core: an object and its kind's adapter in, a verdict out.

One way through: the kind's adapter reads the object into plain data
(`workload`), the planner decides the new values of the fields the webhook
owns (`planner`), and this module turns them into a JSON patch and the undo
record. `mutate` never performs I/O and never raises: every problem with the
object becomes a denial whose message says what is wrong and how to fix it.
Which adapter reads which kind is wired above the core (`webhook.admission.kinds`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import NamedTuple, TypeVar

from webhook.vllm import flags
from webhook.core import patch
from webhook.core import started
from webhook.core import undo
from webhook.core.rebase import rebase, same_words
from webhook.base.jsonvalues import strings_or_none
from webhook.vllm.argv import DesiredFlag
from webhook.vllm.command import rewrite
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
    stored = undo.read(annotations, obj)
    if options.models is not None and options.mode == "enforce" and enabled is not True \
            and not _enforced_for(obj, adapter, context, options):
        options = replace(options, mode="optIn")  # a model the enforce rule does not cover: as if opt-in
    want = _wants_ep(enabled, options)
    if not want:
        if stored is None and options.mode != "forbid":
            return Verdict.allow()
        return _turn_off(obj, adapter, annotations, stored, options, context)
    try:
        return _turn_on(obj, adapter(obj, context), annotations, stored, options, enabled is True)
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


def _owned(workload: Workload, stored: undo.Undo | None) -> tuple[tuple[Field, ...], undo.Undo | None]:
    """The fields the webhook owns: always its `fields`; /dev/shm and env fields once the undo record holds them.
    And the record, each of its fields on the owned field of its role (`undo.Undo.anchored`)."""
    fields = workload.fields()
    if stored is None:
        return fields, None
    shm_fields = workload.optional_fields()
    stored = stored.anchored(f.pointer for f in (*fields, *shm_fields))
    return fields + tuple(f for f in shm_fields if f.pointer in stored.pointers), stored


def _untouched(stored: undo.Undo | None, values: Mapping[str, object]) -> bool:
    """The fields are exactly as the webhook left them."""
    return stored is not None and stored.untouched(values)


class _Intent(NamedTuple):
    """The owned fields as the user means them: current values less the webhook's change (by pointer);
    `exact` when the webhook's change came out without touching an edit, else `removed` names the EP
    switches taken out of what stayed."""

    values: dict[str, object]
    exact: bool
    removed: tuple[str, ...] = ()


def _intent(
    workload: Workload, stored: undo.Undo, current: Mapping[str, object], request: EpRequest | None, options: Options,
) -> _Intent:
    """The user's intent after the owned fields were edited since the webhook wrote them.

    What the webhook wrote is planned again from the stored originals; when that reproduces the record's
    digest, each field is rebased (`webhook.core.rebase`): the webhook's own change comes out, the edit
    stays. Otherwise (the request, GPUs or policy changed too, a role went) or where the edit overlaps the
    webhook's words, the field stays as edited, less the EP switch the webhook added. Fields the record
    does not cover (a role added since) are the user's as they are.
    """
    kept = [p for p in current if p in stored.pointers]
    originals = {p: stored.original(p) for p in kept}
    out = dict(current)
    exact = False
    if request is not None and len(kept) == len(stored.pointers):
        try:
            written = plan(workload, {**current, **originals}, request, options, False).values
        except (Denied, NotApplicable):
            written = {}
        if written and stored.untouched({p: written.get(p) for p in kept}):
            exact = True
            for p in kept:
                merged = rebase(originals[p], written.get(p), current[p])
                out[p] = merged.value
                exact = exact and merged.clean
            exact = _replays(workload, out, current, kept, request, options) and exact
    if exact:
        return _Intent(out, True)
    return _Intent(out, False, _strip_ep(workload, out, originals))


def _replays(
    workload: Workload, intent: dict[str, object], current: Mapping[str, object], kept: list[str],
    request: EpRequest, options: Options,
) -> bool:
    """Whether the webhook, run on the `intent`, writes the `current` flags and parallelism again; each field it
    does not reproduce goes back to its current value in `intent` (a merge that aligned words wrongly)."""
    checked = [f.pointer for f in workload.fields() if f.pointer in kept]
    try:
        again = plan(workload, intent, request, options, False).values
    except (Denied, NotApplicable):
        again = {}
    wrong = [p for p in checked if p not in again or not same_words(again[p], current[p])]
    for p in wrong:
        intent[p] = current[p]
    return not wrong


def _strip_ep(workload: Workload, values: dict[str, object], originals: Mapping[str, object]) -> tuple[str, ...]:
    """Take the EP switch out of the recorded fields in `values` where their original had none; what was removed."""
    removed: list[str] = []
    for role in workload.roles:
        field = role.parallelism
        if field is not None and field.pointer in originals:
            p, before = values.get(field.pointer), originals[field.pointer]
            if isinstance(p, dict) and p.get("expert") is True and not (
                    isinstance(before, dict) and before.get("expert") is True):
                values[field.pointer] = {k: v for k, v in p.items() if k != "expert"}
                removed.append(f"{field.path}.expert")
        for launch in role.launches:
            if launch.command.pointer not in originals and launch.args.pointer not in originals:
                continue
            try:
                if _launch_ep(launch, {**values, **originals}) is not None:
                    continue  # the user's own switch
                found = _launch_ep(launch, values)
                if found is None:
                    continue
                result = rewrite(launch, strings_or_none(values.get(launch.command.pointer)),
                                 strings_or_none(values.get(launch.args.pointer)), _NO_EP, False)
            except (Denied, NotApplicable):
                continue
            values[launch.command.pointer] = None if result.command is None else list(result.command)
            values[launch.args.pointer] = None if result.args is None else list(result.args)
            removed.append(found)
    return tuple(removed)


_NO_EP = (DesiredFlag(flags.ENABLE_EP, present=False),)


def _kept_note(workload: Workload, intent: _Intent, off: bool) -> str:
    """What undo keeps of edits made while EP was on, for a warning (`off`: EP is being turned off now)."""
    removed = ", ".join(intent.removed) or "nothing"
    if off:
        if intent.exact:
            return f"EP is off: undid the webhook's change to {workload.owned_short}; the edits made since stay"
        return f"EP is off: removed {removed}; {workload.owned_short} were edited over the webhook's change, the rest stays"
    return f"{workload.owned_short} were edited over the webhook's change: EP off will keep them, less {removed}"


def _turn_off(
    obj: dict[str, object], adapter: Adapter[C], annotations: Mapping[str, object], stored: undo.Undo | None,
    options: Options, context: C | None = None,
) -> Verdict:
    """Undo an earlier change if there is one; in forbid mode also refuse EP that vLLM would run, or might."""
    try:
        workload = adapter(obj, context if options.mode == "forbid" else None)
    except NotApplicable:
        if stored is None:
            return Verdict.allow()
        raise
    fields, stored = _owned(workload, stored)
    current = _values(fields)
    new, verdict = current, Verdict.allow()
    if stored is not None:
        if _untouched(stored, current):
            new = {p: stored.original(p) for p in current}
            verdict = _result(obj, fields, new, None).with_warnings(
                [f"EP is off: restored {workload.owned} the webhook had changed"]
            )
        else:
            intent = _intent(_planning(obj, adapter, context, workload), stored, current,
                             _request(annotations, options), options)
            new = intent.values
            verdict = _result(obj, fields, new, None).with_warnings(
                [_kept_note(workload, intent, True)]
            )
    if options.mode == "forbid":
        return verdict.with_warnings(_forbid(workload, new, options))
    return verdict


def _readings(workload: Workload, values: Mapping[str, object]) -> list[tuple[Launch, bool, started.Reading]]:
    """What vLLM is started with in every launch of the workload (`values`: the owned fields), and in every
    other container that could start vLLM: (launch, whether the webhook configures it, reading)."""
    out = []
    for role in workload.roles:
        for launch in role.launches:
            command, args = values.get(launch.command.pointer), values.get(launch.args.pointer)
            out.append((launch, True, started.read(
                launch, command if isinstance(command, list) else None, args if isinstance(args, list) else None)))
    for other in workload.others:
        out.append((other, False, started.read(other, other.command.value if isinstance(other.command.value, list)
                                              else None, other.args.value if isinstance(other.args.value, list)
                                              else None, may_be_vllm=_may_run_vllm(other))))
    return out


def _may_run_vllm(launch: Launch) -> bool:
    """A container not served by KServe that may still start vLLM: a vLLM image, or vLLM named in its command."""
    command, args = launch.command.value, launch.args.value
    words = [*(command if isinstance(command, list) else ()), *(args if isinstance(args, list) else ())]
    return "vllm" in launch.image.lower() or "huggingfaceserver" in launch.image or any(
        "vllm" in str(w) for w in words)


def _forbid(workload: Workload, values: Mapping[str, object], options: Options) -> list[str]:
    """Denied when vLLM would run EP anywhere in the workload, or when the webhook cannot tell (fail closed;
    with the policy's `unknownLaunches: warn`, the warnings to give instead)."""
    rule = f"expert parallelism is forbidden in this namespace (policy rule {options.rule!r})"
    for role in workload.roles:
        p = values.get(role.parallelism.pointer) if role.parallelism is not None else None
        if isinstance(p, dict) and p.get("expert") is True and role.parallelism is not None:
            raise Denied(f"{rule}, but {role.parallelism.path}.expert is true; remove it")
    unknown = list(workload.hidden)
    for _, _, reading in _readings(workload, values):
        if reading.state == "on":
            raise Denied(f"{rule}, but {reading.why}; remove it")
        if reading.state == "unknown":
            unknown.append(reading.why)
    if unknown and options.unknown_launches == "deny":
        raise Denied(f"{rule}, and the webhook cannot tell whether vLLM runs it: {unknown[0]}")
    return [f"EP is forbidden here, but cannot be read: {reason}" for reason in unknown[:1]]


def _enforced(verdict: Verdict, workload: Workload, values: Mapping[str, object], options: Options,
              request_explicit: bool) -> Verdict:
    """The verdict, after checking that vLLM will run EP in every launch the webhook configures: enforce without
    opt-out denies when EP would be off or unknown; otherwise such a launch gets a warning.

    Reading every launch costs about as much as planning it: in opt-in mode it is done only where something
    could hide a flag from the edit (`_may_hide`)."""
    strict = options.mode == "enforce" and not options.allow_opt_out
    if not strict and not _may_hide(workload, values):
        return verdict
    problems: list[str] = list(workload.hidden)
    for launch, configured, reading in _readings(workload, values):
        if not configured:
            continue
        role = next(r for r in workload.roles if launch in r.launches)
        if reading.state == "unknown" or (reading.state == "off" and role.layout == "single"):
            problems.append(reading.why or f"{launch.where} would start vLLM without expert parallelism")
    if not problems:
        return verdict
    if strict and (options.unknown_launches == "deny" or not all(
            r.state == "unknown" for _, c, r in _readings(workload, values) if c and r.state != "on")):
        raise Denied(
            f"expert parallelism is required in this namespace (policy rule {options.rule!r}), but the webhook "
            f"cannot make sure vLLM runs it: {problems[0]}"
        )
    return verdict.with_warnings([f"EP may not run: {problems[0]}"] if request_explicit or options.mode != "optIn"
                                 else [])


_KUBELET_REFERENCE = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)")
"""A `$(NAME)` the kubelet expands (the edit reads it as written; a shell's `$X` it already handles)."""


def _may_hide(workload: Workload, values: Mapping[str, object]) -> bool:
    """Whether anything could hide a flag from the edit (which already puts its flags after the shell's
    run-time words): a `$(NAME)` the kubelet expands, `--config`, `envFrom`, or presets by reference."""
    if workload.hidden:
        return True
    for role in workload.roles:
        for launch in role.launches:
            container = launch.container
            if container is not None and "envFrom" in container:
                return True
            for words in (values.get(launch.command.pointer), values.get(launch.args.pointer), launch.runtime_args,
                          launch.runtime_command):
                if words:
                    text = "\n".join(words)  # type: ignore[arg-type]  # the adapters read lists of strings
                    if "--config" in text or ("$(" in text and _KUBELET_REFERENCE.search(text)):
                        return True
    return False


def _planning(obj: dict[str, object], adapter: Adapter[C], context: C | None, workload: Workload) -> Workload:
    """The workload as the webhook planned it when EP was on (with `context`), else as read without it."""
    if context is None:
        return workload
    try:
        return adapter(obj, context)
    except (Denied, NotApplicable):
        return workload


def _request(annotations: Mapping[str, object], options: Options) -> EpRequest | None:
    """The EP request the annotations make, None when they cannot be read (the undo then cannot re-plan)."""
    try:
        return read_ep_request(annotations, options)
    except (Denied, NotApplicable):
        return None


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
    options: Options, explicit: bool,
) -> Verdict:
    fields, stored = _owned(workload, stored)
    current = _values(fields)
    untouched_since = _untouched(stored, current)
    request = read_ep_request(annotations, options)
    reject = options.on_conflict == "reject"

    # Plan on the fields as deployed: fields the webhook wrote itself are never "hand-written
    # conflicts", and the warnings say what this write changes. On most updates that plan is the
    # only one: nothing changes.
    on_current = plan(workload, current, request, options, reject and not untouched_since)
    # Edited since the webhook wrote them (a hand edit, another mutating webhook, a container or role
    # added): the record becomes the user's intent, the current values less the webhook's change.
    intent = None if stored is None or untouched_since else _intent(workload, stored, current, request, options)
    if on_current.values == current:
        # Already EP-configured for this request: nothing changes but the record, if it was edited since.
        if intent is None:
            return _enforced(Verdict.allow(), workload, current, options, explicit)
        new_undo = None if intent.values == current else undo.make(intent.values, current, obj)
        verdict = _result(obj, fields, current, new_undo)
        verdict = verdict.with_warnings([_kept_note(workload, intent, False)]) if not intent.exact else verdict
        return _enforced(verdict, workload, current, options, explicit)

    # Something changes. While the webhook's last output is untouched, the new values come from the
    # stored originals, so that a new GPU request or TP gives a fresh layout (flags the webhook added
    # for annotations since removed go) and undo stays exact: the one path with a second plan.
    result = on_current
    base = current
    if stored is not None and untouched_since:
        base = {p: stored.original(p) for p in current}
        result = plan(workload, base, request, options, reject)
    elif intent is not None:
        base = intent.values
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
    if intent is not None and not intent.exact:
        notes.append(_kept_note(workload, intent, False))
    new_undo = None if new == base else undo.make(base, new, obj)
    return _enforced(_result(obj, fields, new, new_undo).with_warnings([*on_current.warnings, *notes]),
                     workload, new, options, explicit)


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
