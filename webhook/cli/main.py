"""The `ep-webhook` command line: a thin shell around the core.

Exit codes of `mutate`: 0 allowed (warnings on stderr), 1 any object denied
(each reason on stderr, nothing on stdout), 2 usage errors or unreadable input.
Of `audit`: 0 every object compliant, 1 anything would change or be denied (or the webhook failed on it), 2
usage errors, an unreadable kubeconfig or an unreachable API server; with `--vllm-version`, 0 when no object's
verdict would differ on that vLLM release, 1 when any would.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from webhook.cli import manifests, yamlinput
from webhook.admission.reports import CHOICES as REPORT_CHOICES
from webhook.kserve import shipped
from webhook.kserve.servingruntime import RuntimeSpec
from webhook.core.options import ON_CONFLICT, Options

if TYPE_CHECKING:
    from webhook.core.policy import Policy

EXIT_ALLOWED, EXIT_DENIED, EXIT_USAGE = 0, 1, 2


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as `|` blocks, so they stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def load_policy(path: str) -> Policy:
    """Read and validate a policy file; PolicyError naming the field or the read error."""
    from webhook.core import policy as policies

    try:
        with open(path, encoding="utf-8") as f:
            return policies.parse(f.read())
    except OSError as e:
        raise policies.PolicyError(f"policy: cannot read {path}: {e.strerror}") from None


class InputError(Exception):
    """The input could not be read or parsed as a stream of objects."""


def read_text(path: str, stdin: TextIO) -> str:
    """The text of a file, or of stdin for `-`; InputError when it cannot be read."""
    try:
        if path == "-":
            return stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e


def read_documents(path: str, stdin: TextIO) -> manifests.Documents:
    """One or many YAML documents, a JSON object, or a List, from a file or stdin.

    InputError when unreadable, or beyond a limit of `yamlinput` (alias bombs, deep nesting, huge numbers)."""
    text = read_text(path, stdin)
    try:
        loaded = yamlinput.load_all(text)
    except yamlinput.YAMLLimitError as e:
        raise InputError(f"{path} cannot be read safely: {e}") from e
    except yaml.YAMLError as e:
        raise InputError(f"{path} is neither YAML nor JSON: {e}") from e
    try:
        return manifests.documents(loaded)
    except manifests.StreamError as e:
        raise InputError(f"{path}: {e}") from e


def render(obj: object, output: str) -> str:
    """An object as YAML (scripts as `|` blocks) or indented JSON."""
    if output == "json":
        return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def render_stream(docs: manifests.Documents, objects: list[dict[str, object]], output: str) -> str:
    """The stream in the form it came: one object, multi-document YAML, or a List (always for JSON)."""
    if docs.form == "list":
        return render({**(docs.envelope or {}), "items": objects}, output)
    if docs.form == "single":
        return render(objects[0], output)
    if output == "json":
        return render({"apiVersion": "v1", "kind": "List", "items": objects}, output)
    return "---\n".join(render(o, output) for o in objects)


def _offline_options(ns: argparse.Namespace) -> Callable[[dict[str, object]], Options]:
    """Options for `mutate` per object: the policy applied to its namespace, or the defaults."""
    from dataclasses import replace

    from webhook.core import policy as policies

    policy = None
    labels: dict[str, str] = {}
    if ns.policy is not None:
        try:
            policy = load_policy(ns.policy)
        except policies.PolicyError as e:
            raise InputError(f"invalid policy: {e}") from None
        for pair in filter(None, (ns.namespace_labels or "").split(",")):
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise InputError(f"--namespace-labels: {pair!r} is not key=value")
            labels[key.strip()] = value.strip()

    def options_for(obj: dict[str, object]) -> Options:
        options = policy.options_for(manifests.namespace_of(obj), labels) if policy is not None else Options()
        return replace(options, on_conflict=ns.on_conflict) if ns.on_conflict is not None else options

    return options_for


def _runtime_files(paths: Sequence[str], stdin: TextIO) -> list[RuntimeSpec]:
    found: list[RuntimeSpec] = []
    for path in paths:
        docs = read_documents(path, stdin)
        specs = manifests.runtimes_in(docs.items)
        if not specs:
            raise InputError(f"--runtimes {path}: no ServingRuntime or ClusterServingRuntime in it")
        found.extend(specs)
    return found


def _resource_files(paths: Sequence[str], stdin: TextIO) -> tuple[list[RuntimeSpec], list[dict[str, object]]]:
    """The runtimes and ResourceClaimTemplates of `--resources` files; InputError for a file with neither."""
    runtimes: list[RuntimeSpec] = []
    objects: list[dict[str, object]] = []
    for path in paths:
        docs = read_documents(path, stdin)
        specs = manifests.runtimes_in(docs.items)
        templates = [o for o in docs.items if manifests.claim_templates_in([o])]
        if not specs and not templates:
            raise InputError(f"--resources {path}: no ResourceClaimTemplate, ServingRuntime or ClusterServingRuntime in it")
        runtimes.extend(specs)
        objects.extend(templates)
    return runtimes, objects


def cmd_policy_check(ns: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`ep-webhook policy check FILE`: exit 0 when valid, 1 naming the bad field."""
    from webhook.core import policy as policies

    try:
        policy = load_policy(ns.file)
    except policies.PolicyError as e:
        print(f"invalid: {e}", file=stderr)
        return EXIT_DENIED
    modes = sorted({policy.defaults.mode, *(str(r.overrides.get("mode", policy.defaults.mode)) for r in policy.rules)})
    print(f"valid: {len(policy.rules)} rule(s); modes used: {', '.join(modes)}; "
          f"opt-in only: {'yes' if policy.opt_in_only else 'no'}", file=stdout)
    return EXIT_ALLOWED


DEFAULT_RUNTIMES_WARNING = (
    f"resolved against KServe {shipped.RELEASE}'s shipped LLM runtimes as none were given "
    "(--runtimes FILE; --no-default-runtimes)"
)
"""What `mutate` says of each InferenceService it resolved against `shipped.RUNTIMES` (under 120 characters)."""


def cmd_mutate(ns: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """`ep-webhook mutate`: the stream through the core; nothing printed unless every object is allowed."""
    try:
        docs = read_documents(ns.file, stdin)
        options_for = _offline_options(ns)
        runtimes = _runtime_files(ns.runtimes or [], stdin)
        more_runtimes, resources = _resource_files(ns.resources or [], stdin)
    except InputError as e:
        print(f"error: {e}", file=stderr)
        return EXIT_USAGE
    defaults = () if ns.no_default_runtimes else shipped.RUNTIMES
    decided = manifests.decide(docs, options_for, [*runtimes, *more_runtimes], defaults, DEFAULT_RUNTIMES_WARNING,
                               extra_objects=resources)
    denied = [d for d in decided if d.denial is not None]
    if denied:
        # a pipeline must never apply half a stream: nothing on stdout
        for d in denied:
            print(f"{d.ref}: {d.denial}", file=stderr)
            for w in d.warnings:
                print(f"warning: {d.ref}: {w}", file=stderr)
        return EXIT_DENIED
    for d in decided:
        for w in d.warnings:
            print(f"warning: {d.ref}: {w}", file=stderr)
    if ns.output == "patch":
        patches = [
            {"kind": d.obj.get("kind"), "namespace": manifests.namespace_of(d.obj), "name": manifests.name_of(d.obj),
             "patch": list(d.patch)}
            for d in decided if d.patch
        ]
        stdout.write(json.dumps(patches, indent=2, ensure_ascii=False) + "\n")
    else:
        stdout.write(render_stream(docs, [d.obj for d in decided], ns.output))
    return EXIT_ALLOWED


def cmd_review(ns: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """`ep-webhook review`: each object to a running webhook; print its verdict, warnings and patch."""
    from webhook.cli import send

    try:
        docs = read_documents(ns.file, stdin)
    except InputError as e:
        print(f"error: {e}", file=stderr)
        return EXIT_USAGE
    try:
        answers = send.send(docs.items, ns.url, ns.ca)
    except send.SendError as e:
        print(f"error: {e}", file=stderr)
        return EXIT_USAGE
    if not answers:
        print(f"error: {ns.file} has no InferenceService or LLMInferenceService to send", file=stderr)
        return EXIT_USAGE
    for a in answers:
        verdict = "allowed" if a.allowed else "denied"
        change = f", {len(a.patch)} patch operation(s)" if a.patch else (", unchanged" if a.allowed else "")
        print(f"{a.ref}: {verdict}{change}", file=stdout)
        if a.message:
            print(f"  message: {a.message}", file=stdout)
        for w in a.warnings:
            print(f"  warning: {w}", file=stdout)
        if a.patch:
            print(textwrap.indent(json.dumps(list(a.patch), indent=2, ensure_ascii=False), "  "), file=stdout)
    return EXIT_ALLOWED if all(a.allowed for a in answers) else EXIT_DENIED


def _audit_table(findings: list[Any], width: int) -> str:
    """kubectl-style columns; MESSAGE is cut to the terminal's width."""
    header = ("NAMESPACE", "KIND", "NAME", "EP", "RESULT", "MESSAGE")
    rows = [(f.namespace, f.kind, f.name, "on" if f.ep else "off", f.result, f.message) for f in findings]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = []
    for row in [header, *rows]:
        head = "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "   "
        room = max(width - len(head), 20)
        message = row[5] if len(row[5]) <= room else row[5][: room - 1] + "…"
        lines.append((head + message).rstrip())
    return "\n".join(lines) + "\n"


def _audit_summary(findings: list[Any]) -> str:
    from webhook.admission.audit import RESULTS

    tally = {r: sum(1 for f in findings if f.result == r) for r in RESULTS}
    shown = [r for r in RESULTS if r != "error" or tally[r]]  # errors only when there are some
    return f"{len(findings)} objects: " + ", ".join(f"{tally[r]} {r}" for r in shown)


def upgrade_summary(findings: list[Any], audited: int, target: str) -> str:
    """The last line of `audit --vllm-version`: how many of the `audited` objects would differ on `target`."""
    from webhook.admission.audit import RESULTS

    tally = {r: sum(1 for f in findings if f.result == r) for r in RESULTS}
    then = ", ".join(f"{tally[r]} {r}" for r in RESULTS if tally[r])
    return f"{audited} objects audited for vLLM {target}: {len(findings)} would differ" + (f" ({then})" if then else "")


def vllm_release(text: str) -> tuple[int, ...]:
    """An argparse type: a vLLM release number (`0.24.0`) as integers."""
    from webhook.vllm.releases import parse_version

    version = parse_version(text) if len(text) < 40 else None
    if version is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a vLLM release number like 0.24.0")
    return version


def cmd_audit(ns: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`ep-webhook audit`: what the webhook would do to every existing object now."""
    import shutil

    from kubernetes import config as kubeconfig
    from kubernetes.client.exceptions import ApiException

    from webhook.admission import audit
    from webhook.cluster import inventory
    from webhook.core import policy as policies
    from webhook.admission.kinds import KINDS
    from webhook.vllm.releases import show

    policy = policies.DEFAULT
    if ns.policy:
        try:
            policy = load_policy(ns.policy)
        except policies.PolicyError as e:
            print(f"error: invalid policy: {e}", file=stderr)
            return EXIT_USAGE
    try:
        new_client: Any = kubeconfig.new_client_from_config
        api = new_client(config_file=ns.kubeconfig, context=ns.context)
    except Exception as e:  # noqa: BLE001 - any unreadable kubeconfig: a clear message, no traceback
        print(f"error: cannot use the kubeconfig{' ' + ns.kubeconfig if ns.kubeconfig else ''}: "
              f"{type(e).__name__}: {str(e)[:300]}", file=stderr)
        return EXIT_USAGE
    host = api.configuration.host
    interactive = stderr.isatty()

    def progress(n: int) -> None:
        if interactive and n % inventory.PAGE == 0:
            print(f"\rlisted {n} objects…", end="", file=stderr, flush=True)

    try:
        snap = inventory.snapshot(api, ns.namespace, progress)
    except ApiException as e:
        print(f"error: the API server at {host} answered {e.status} {e.reason}: "
              f"{str(e.body or '')[:300]}", file=stderr)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - unreachable server, TLS failures: a clear message
        print(f"error: cannot reach the API server at {host}: {type(e).__name__}: {str(e)[:300]}", file=stderr)
        return EXIT_USAGE
    if interactive and len(snap.objects) >= inventory.PAGE:
        print(file=stderr)
    if not snap.labels_readable:
        print("warning: namespaces cannot be listed with this kubeconfig; label-selector rules are reported "
              "as unknown", file=stderr)
    findings = audit.run(snap.objects, policy, snap.labels_of, snap.runtimes_for, snap.claim_templates_for,
                         snap.llm_configs_for, ns.vllm_version)
    if ns.output == "json":
        stdout.write(json.dumps([f.as_json() for f in findings], indent=2, ensure_ascii=False) + "\n")
    else:
        stdout.write(_audit_table(findings, shutil.get_terminal_size((160, 24)).columns))
        if ns.vllm_version is not None:
            audited = sum(1 for o in snap.objects if o.get("kind") in KINDS)
            stdout.write(upgrade_summary(findings, audited, show(ns.vllm_version)) + "\n")
        else:
            stdout.write(_audit_summary(findings) + "\n")
    if ns.vllm_version is not None:
        return EXIT_ALLOWED if not findings else EXIT_DENIED
    return EXIT_ALLOWED if all(f.result == "compliant" for f in findings) else EXIT_DENIED


def cmd_serve(ns: argparse.Namespace, stderr: TextIO) -> int:
    """`ep-webhook serve`: the admission server, with its policy, cluster view and certificates."""
    import os

    from webhook.server import logs, server  # the server stack loads only when serving
    from webhook.core import policy as policies
    from webhook.server.app import ServerState
    from webhook.cluster.kubecache import ClusterView, api_client
    from webhook.cluster.reports import ReportWriter
    from webhook.tls.reloader import Reloading

    logs.setup(ns.log_level)
    state = ServerState()
    if ns.policy:
        try:
            state.policy = Reloading(ns.policy, load_policy, "policy")
        except policies.PolicyError as e:
            print(f"error: invalid policy: {e}", file=stderr)
            return EXIT_DENIED
    api = None
    if ns.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            api = api_client(ns.kubeconfig)
        except Exception as e:  # noqa: BLE001 - reported, then exit non-zero
            print(f"error: cannot configure the Kubernetes client: {type(e).__name__}: {str(e)[:300]}", file=stderr)
            return EXIT_DENIED
        state.cluster = ClusterView(api, workloads=ns.audit_interval > 0)
        state.audit_interval = ns.audit_interval
        state.audit_target = ns.audit_vllm_version
        if ns.audit_interval > 0:
            state.reports = ReportWriter(api, ns.audit_reports)
        state.cluster.start()
    cert_dir = Path(ns.cert_dir)
    if ns.dev_certs:
        server.ensure_dev_certs(cert_dir)
    if ns.self_managed:
        if api is None:
            print("error: --self-managed needs a Kubernetes API server: run in a cluster or pass --kubeconfig",
                  file=stderr)
            return EXIT_USAGE
        code = _start_self_managed(ns, cert_dir, api, stderr)
        if code:
            return code
    missing = [n for n in ("tls.crt", "tls.key") if not (cert_dir / n).is_file()]
    if missing:
        print(f"error: {cert_dir} has no {' or '.join(missing)}; mount a TLS Secret there or pass --dev-certs",
              file=stderr)
        return EXIT_USAGE
    return server.serve(cert_dir, ns.host, ns.port, state)


def _start_self_managed(ns: argparse.Namespace, cert_dir: Path, api: object, stderr: TextIO) -> int:
    import datetime as dt
    import threading

    from webhook.cluster import selfmanaged

    namespace = ns.namespace or _pod_namespace()
    if not (ns.service and namespace and ns.secret_name):
        print("error: --self-managed needs --service, --secret-name and a namespace "
              "(--namespace or the pod's service-account namespace)", file=stderr)
        return EXIT_USAGE
    settings = selfmanaged.Settings(
        secret_name=ns.secret_name,
        namespace=namespace,
        names=selfmanaged.names_for(ns.service, namespace, ns.san or []),
        mutating_configs=tuple(ns.mutating_webhook_config or []),
        validating_configs=tuple(ns.validating_webhook_config or []),
        renew_before=dt.timedelta(days=ns.renew_before_days),
        cert_days=ns.cert_days,
    )
    try:
        core, admission = selfmanaged.load_clients(api)
        manager = selfmanaged.SelfManager(settings, cert_dir, core, admission)
        manager.sync()
    except Exception as e:  # noqa: BLE001 - reported, then exit non-zero
        print(f"error: self-managed certificates failed: {type(e).__name__}: {str(e)[:300]}", file=stderr)
        return 1
    threading.Thread(
        target=selfmanaged.run_forever, args=(manager, ns.sync_interval, 10.0, threading.Event()),
        daemon=True, name="self-managed-certs",
    ).start()
    return 0


def _pod_namespace() -> str:
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return ""


def cmd_certs_generate(ns: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """`ep-webhook certs generate`: a CA and serving pair for a Service or names."""
    from webhook.tls import certs

    names: list[str] = []
    if ns.service:
        names += certs.service_names(ns.service, ns.namespace)
    names += ns.san or []
    if not names:
        print("error: give --service NAME --namespace NS and/or --san NAME_OR_IP", file=stderr)
        return EXIT_USAGE
    if ns.days < 1:
        print("error: --days must be at least 1", file=stderr)
        return EXIT_USAGE
    out = Path(ns.out_dir)
    certs.write_bundle(out, certs.generate(names, days=ns.days))
    print(f"wrote {out / certs.CA_FILE}, {out / certs.CERT_FILE}, {out / certs.KEY_FILE} for {', '.join(names)}",
          file=stdout)
    return EXIT_ALLOWED


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds from `90s`, `10m`, `1h`, `1h30m` or a bare number of seconds; 0 is allowed."""
    import re

    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 10m or 1h")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def parser() -> argparse.ArgumentParser:
    """The command line: mutate, audit, policy check, serve, certs generate."""
    p = argparse.ArgumentParser(prog="ep-webhook", description="vLLM expert-parallel webhook for KServe")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mutate", help="apply the webhook offline to a stream of manifests")
    m.add_argument("-f", "--file", required=True,
                   help="YAML (one or many documents) or JSON (an object or a List); - reads stdin")
    m.add_argument("--runtimes", action="append", metavar="FILE",
                   help="(Cluster)ServingRuntimes for runtime resolution, besides those in the stream (repeatable); "
                        f"with none, KServe {shipped.RELEASE}'s shipped LLM runtimes are used")
    m.add_argument("--no-default-runtimes", action="store_true",
                   help=f"without runtimes, do not resolve against KServe {shipped.RELEASE}'s shipped ones")
    m.add_argument("--resources", action="append", metavar="FILE",
                   help="cluster objects the manifests refer to: ResourceClaimTemplates (GPUs through DRA) and "
                        "(Cluster)ServingRuntimes, besides those in the stream (repeatable)")
    m.add_argument("-o", "--output", choices=("yaml", "json", "patch"), default="yaml")
    m.add_argument(
        "--on-conflict",
        choices=ON_CONFLICT,
        help="hand-written TP/DP/EP flags that disagree: fix them (override) or deny (reject); overrides the policy",
    )
    m.add_argument("--policy", help="policy file applied to the object's namespace (metadata.namespace)")
    m.add_argument("--namespace-labels", help="labels of that namespace for namespaceSelector rules: k=v,k2=v2")

    r = sub.add_parser("review", help="send manifests to a running webhook as AdmissionReviews; print its answers")
    r.add_argument("-f", "--file", required=True, help="YAML or JSON, as for mutate; - reads stdin")
    r.add_argument("--url", default="https://localhost:8443/mutate", help="the webhook's /mutate URL")
    r.add_argument("--ca", default="certs/ca.crt", help="CA that signed the server's certificate (default: ./dev serve's)")

    a = sub.add_parser("audit", help="report what the webhook would do to every existing object now")
    a.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    a.add_argument("--context", help="kubeconfig context (default: the current one)")
    a.add_argument("--policy", help="policy file (default: opt-in everywhere)")
    a.add_argument("--namespace", "-n", help="audit one namespace (default: all the caller can read)")
    a.add_argument("-o", "--output", choices=("table", "json"), default="table")
    a.add_argument("--vllm-version", type=vllm_release, metavar="X.Y.Z",
                   help="upgrade readiness: report only the objects whose verdict would differ if their runtime "
                        "ran this vLLM release (over their ep.vllm-version and image)")

    pol = sub.add_parser("policy", help="policy tools")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    pc = psub.add_parser("check", help="validate a policy file: exit 0 if valid, 1 naming the bad field")
    pc.add_argument("file")

    s = sub.add_parser("serve", help="serve the admission webhook over TLS")
    s.add_argument("--cert-dir", required=True, help="folder with tls.crt and tls.key (a TLS Secret volume)")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--dev-certs", action="store_true",
                   help="generate a development CA and serving certificate in --cert-dir when absent")
    s.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    s.add_argument("--policy", help="policy file (reloaded when it changes); default: opt-in everywhere")
    s.add_argument("--kubeconfig", help="kubeconfig for namespace labels, runtimes and self-managed "
                                        "certificates (default: in-cluster when running in a pod)")
    s.add_argument("--audit-interval", type=duration, default=600.0, metavar="DURATION",
                   help="audit every InferenceService and LLMInferenceService this often into /metrics and reports "
                        "(e.g. 30s, 10m, 1h; 0 turns it off; needs a cluster); default 10m")
    s.add_argument("--audit-vllm-version", type=vllm_release, metavar="X.Y.Z",
                   help="with each audit, also count the objects whose verdict would differ on this vLLM release "
                        "(ep_webhook_audit_upgrade_objects{target=X.Y.Z})")
    s.add_argument("--audit-reports", choices=REPORT_CHOICES, default="auto",
                   help="write each audit as policy reports: openreports.io/v1alpha1 Report, wgpolicyk8s.io/v1alpha2 "
                        "PolicyReport, auto (the first whose CRD is installed) or none; default auto")
    sm = s.add_argument_group("self-managed certificates (a CA and serving pair kept in a Secret)")
    sm.add_argument("--self-managed", action="store_true")
    sm.add_argument("--secret-name", default="vllm-ep-webhook-tls")
    sm.add_argument("--namespace", help="namespace of the Secret and Service (default: the pod's)")
    sm.add_argument("--service", help="the webhook's Service name: its DNS names go into the certificate")
    sm.add_argument("--san", action="append", help="extra DNS name or IP for the certificate (repeatable)")
    sm.add_argument("--mutating-webhook-config", action="append",
                    help="MutatingWebhookConfiguration whose caBundle to keep in sync (repeatable)")
    sm.add_argument("--validating-webhook-config", action="append",
                    help="ValidatingWebhookConfiguration whose caBundle to keep in sync (repeatable)")
    sm.add_argument("--renew-before-days", type=int, default=30)
    sm.add_argument("--cert-days", type=int, default=365)
    sm.add_argument("--sync-interval", type=float, default=300.0, help="seconds between checks")

    c = sub.add_parser("certs", help="certificate tools")
    csub = c.add_subparsers(dest="certs_command", required=True)
    g = csub.add_parser("generate", help="write ca.crt, tls.crt and tls.key")
    g.add_argument("--out-dir", required=True)
    g.add_argument("--service", help="Service name: adds NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local")
    g.add_argument("--namespace", default="default")
    g.add_argument("--san", action="append", help="extra DNS name or IP (repeatable)")
    g.add_argument("--days", type=int, default=365)
    return p


def main(
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; returns the exit status."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        ns = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_ALLOWED
    if ns.command == "mutate":
        return cmd_mutate(ns, stdin, stdout, stderr)
    if ns.command == "serve":
        return cmd_serve(ns, stderr)
    if ns.command == "certs":
        return cmd_certs_generate(ns, stdout, stderr)
    if ns.command == "policy":
        return cmd_policy_check(ns, stdout, stderr)
    if ns.command == "audit":
        return cmd_audit(ns, stdout, stderr)
    if ns.command == "review":
        return cmd_review(ns, stdin, stdout, stderr)
    return EXIT_USAGE
