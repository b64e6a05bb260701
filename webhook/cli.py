"""The `ep-webhook` command line: a thin shell around the core.

Exit codes of `mutate`: 0 allowed (warnings on stderr), 1 denied (the reason
on stderr), 2 usage errors or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import jsonpatch
import yaml

from webhook.engine import mutate
from webhook.settings import Options

EXIT_ALLOWED, EXIT_DENIED, EXIT_USAGE = 0, 1, 2


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as `|` blocks, so they stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


class InputError(Exception):
    """The input could not be read or parsed as one document."""


def read_document(path: str, stdin: TextIO) -> object:
    try:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise InputError(f"{path} is neither YAML nor JSON: {e}") from e
    if len(docs) != 1:
        raise InputError(f"{path} holds {len(docs)} documents; give exactly one InferenceService")
    return docs[0]


def render(obj: object, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _offline_options(ns: argparse.Namespace, obj: object) -> Options:
    """Options for `mutate`: the policy applied to the object's namespace, or the defaults."""
    from dataclasses import replace

    from webhook import policy as policies

    if ns.policy is None:
        options = Options()
    else:
        try:
            policy = policies.load(ns.policy)
        except policies.PolicyError as e:
            raise InputError(f"invalid policy: {e}") from None
        labels: dict[str, str] = {}
        for pair in filter(None, (ns.namespace_labels or "").split(",")):
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise InputError(f"--namespace-labels: {pair!r} is not key=value")
            labels[key.strip()] = value.strip()
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        options = policy.options_for(namespace if isinstance(namespace, str) else "default", labels)
    if ns.on_conflict is not None:
        options = replace(options, on_conflict=ns.on_conflict)
    return options


def cmd_policy_check(ns: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from webhook import policy as policies

    try:
        policy = policies.load(ns.file)
    except policies.PolicyError as e:
        print(f"invalid: {e}", file=stderr)
        return EXIT_DENIED
    modes = sorted({policy.defaults.mode, *(str(r.overrides.get("mode", policy.defaults.mode)) for r in policy.rules)})
    print(f"valid: {len(policy.rules)} rule(s); modes used: {', '.join(modes)}; "
          f"opt-in only: {'yes' if policy.opt_in_only else 'no'}", file=stdout)
    return EXIT_ALLOWED


def cmd_mutate(ns: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    try:
        obj = read_document(ns.file, stdin)
    except InputError as e:
        print(f"error: {e}", file=stderr)
        return EXIT_USAGE
    try:
        options = _offline_options(ns, obj)
    except InputError as e:
        print(f"error: {e}", file=stderr)
        return EXIT_USAGE
    verdict = mutate(obj, options)
    if not verdict.allowed:
        print(f"denied: {verdict.message}", file=stderr)
        return EXIT_DENIED
    for w in verdict.warnings:
        print(f"warning: {w}", file=stderr)
    if ns.output == "patch":
        stdout.write(json.dumps(list(verdict.patch), indent=2, ensure_ascii=False) + "\n")
    else:
        result = jsonpatch.apply_patch(obj, list(verdict.patch)) if verdict.patch else obj
        stdout.write(render(result, ns.output))
    return EXIT_ALLOWED


def cmd_serve(ns: argparse.Namespace, stderr: TextIO) -> int:
    import os

    from webhook import logs, server  # the server stack loads only when serving
    from webhook import policy as policies
    from webhook.app import ServerState
    from webhook.kubecache import ClusterView, api_client
    from webhook.reloader import Reloading

    logs.setup(ns.log_level)
    state = ServerState()
    if ns.policy:
        try:
            state.policy = Reloading(ns.policy, policies.load, "policy")
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
        state.cluster = ClusterView(api)
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

    from webhook import selfmanaged

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
    from webhook import certs

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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ep-webhook", description="vLLM expert-parallel webhook for KServe")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mutate", help="apply the webhook to an InferenceService offline")
    m.add_argument("-f", "--file", required=True, help="YAML or JSON file; - reads stdin")
    m.add_argument("-o", "--output", choices=("yaml", "json", "patch"), default="yaml")
    m.add_argument(
        "--on-conflict",
        choices=("override", "reject"),
        help="hand-written TP/DP/EP flags that disagree: fix them (override) or deny (reject); overrides the policy",
    )
    m.add_argument("--policy", help="policy file applied to the object's namespace (metadata.namespace)")
    m.add_argument("--namespace-labels", help="labels of that namespace for namespaceSelector rules: k=v,k2=v2")

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
    return EXIT_USAGE
