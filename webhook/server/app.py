"""The ASGI application: /mutate, /healthz, /readyz, /metrics.

/mutate reads the raw body once (bounded), decodes it with one JSON parse,
runs the core and serialises the answer; no framework model validation of
the whole review and no copies of the object on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Response
from starlette.types import Receive, Scope, Send

from webhook.admission.admit import admit, outcome
from webhook.cluster.kubecache import ClusterView
from webhook.cluster.reports import ReportWriter
from webhook.server.logs import review_log
from webhook.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from webhook.server.metrics import Metrics
from webhook.core.policy import DEFAULT, Policy
from webhook.kserve import images
from webhook.kserve.images import ReleaseOf
from webhook.vllm.releases import Version
from webhook.kserve.view import NamespaceView
from webhook.tls.reloader import Reloading
from webhook.admission.response import build_response, errored
from webhook.admission.review import MAX_BODY, OPERATIONS, BadReview, decode
from webhook.core.options import Options
from webhook.tls.context import CertReloader
from webhook.core.verdict import Verdict
from webhook.vllm.releases import show

log = logging.getLogger("webhook.review")
JSON = "application/json"


RELEASE_MEMO_SIZE = 1024
"""Distinct image strings whose vLLM release the server keeps (least recently used go first): a cluster runs
a few dozen images, and a client sending endless new ones cannot grow the memo."""


RELEASE_MEMO_LENGTH = 512
"""The longest image string the memo keeps, in characters: a reference is a registry, a repository path, a tag
and a digest, far below this; a client cannot fill the memo with megabyte-long strings."""


class ReleaseMemo:
    """`lookup` (an image's vLLM release), remembering its answers for up to `RELEASE_MEMO_SIZE` image strings of
    at most `RELEASE_MEMO_LENGTH` characters, least recently used first (`functools.lru_cache`); longer strings
    are looked up every time. Called like the lookup (`ReleaseOf`)."""

    def __init__(self, lookup: ReleaseOf) -> None:
        self._lookup = lookup
        self._remembered = functools.lru_cache(RELEASE_MEMO_SIZE)(lookup)
        self.cache_info = self._remembered.cache_info
        """Hits, misses and size of the memo (`functools.lru_cache`'s)."""

    def __call__(self, image: str) -> Version | None:
        return self._remembered(image) if len(image) <= RELEASE_MEMO_LENGTH else self._lookup(image)


@dataclass
class ServerState:
    """What the app needs from the outside: policy, cluster caches, certificates."""

    policy: Reloading[Policy] | None = None
    cluster: ClusterView | None = None
    reloader: CertReloader | None = None
    metrics: Metrics = field(default_factory=Metrics)
    reload_interval: float = 1.0
    audit_interval: float = 0.0  # seconds between audits of the watched objects; 0: no audit
    reports: ReportWriter | None = None  # writes each audit's policy reports; None: no reports
    audit_target: tuple[int, ...] | None = None  # upgrade readiness: also audit as if every object ran this vLLM
    release_of: ReleaseMemo = field(default_factory=lambda: ReleaseMemo(images.release_of))
    """The vLLM release of an image, read once per distinct image string (the latest `RELEASE_MEMO_SIZE`, each
    at most `RELEASE_MEMO_LENGTH` characters; longer ones are read every time)."""

    def options_for(self, namespace: str) -> Options:
        """The policy's options for a namespace (LabelsUnknown when its labels are needed but not known)."""
        policy = self.policy.value if self.policy else DEFAULT
        labels = self.cluster.labels(namespace) if self.cluster else None
        return policy.options_for(namespace, labels)

    def view_for(self, namespace: str) -> NamespaceView:
        """What the adapters may read of `namespace` besides the object: the cluster view's runtimes, templates and
        configs as last seen (unknown without a cluster view), and the memo of image releases."""
        cluster = self.cluster
        if cluster is None:
            return self._alone
        return NamespaceView(cluster.runtimes_for(namespace), cluster.claim_templates_for(namespace),
                             cluster.llm_configs_for(namespace), self.release_of)

    @functools.cached_property
    def _alone(self) -> NamespaceView:
        return NamespaceView(release_of=self.release_of)

    def ready(self) -> bool:
        """Serving certificates loaded and, with a cluster view, the caches admission needs listed once."""
        return self.reloader is not None and (self.cluster is None or self.cluster.synced())


def _check_length(length: bytes | None) -> None:
    """BadReview 413 when a Content-Length header announces more than MAX_BODY bytes, 400 when it is no number.

    The HTTP parser (httptools) accepts any run of digits that fits in 64 bits, leading zeros included, so
    the text is measured without them before it is converted: no header, however long, costs more than its length."""
    if length is None:
        return
    if not (length.isascii() and length.isdigit()):
        raise BadReview(400, "the Content-Length header is not a whole number")
    digits = length.lstrip(b"0")
    if len(digits) > len(str(MAX_BODY)) or int(digits or b"0") > MAX_BODY:
        raise BadReview(413, f"request body is larger than {MAX_BODY} bytes")


async def _read_body(headers: dict[bytes, bytes], receive: Receive) -> bytes:
    _check_length(headers.get(b"content-length"))
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadReview(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise BadReview(413, f"request body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class WebhookApp:
    """The ASGI entry point: POST /mutate is answered here, everything else by FastAPI.

    /mutate runs on every InferenceService create and update, so it skips the
    framework's per-request machinery (routing, dependency solving, middleware
    layers): the raw body is read once, parsed once, and the answer written
    directly. Health, readiness and metrics stay ordinary FastAPI routes.
    """

    def __init__(self, state: ServerState, api: FastAPI) -> None:
        self.state = state
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mutate":
            if scope["method"] == "POST":
                await self.mutate(scope, receive, send)
            else:
                await _respond(send, 405, b'{"error":"use POST"}')
            return
        await self.api(scope, receive, send)

    async def mutate(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        started = time.perf_counter()
        headers = dict(scope["headers"])
        try:
            body = await _read_body(headers, receive)
            content_type = headers.get(b"content-type")
            review = decode(body, content_type.decode("latin-1") if content_type is not None else None)
        except BadReview as bad:
            elapsed = time.perf_counter() - started
            state.metrics.observe("unknown", "rejected", elapsed)
            review_log.write("rejected review", "warning", {
                "outcome": "rejected", "status": bad.status, "reason": bad.message[:200],
                "duration_ms": round(elapsed * 1000, 3)})
            await _respond(send, bad.status, orjson.dumps({"error": bad.message}))
            return
        req = review.request
        verdict: Verdict | None = None
        try:
            verdict = admit(req, state.options_for, state.view_for)
            answer = build_response(review.apiVersion, req.uid, verdict)
            result = outcome(verdict)
        except Exception:  # a bug must not become an HTTP 500 or take the server down
            log.exception("review failed", extra={"fields": {"uid": req.uid}})
            answer = errored(review.apiVersion, req.uid, 500, "the EP webhook failed on this object; see its logs")
            result = "denied"
        elapsed = time.perf_counter() - started
        try:  # the answer first: the API server (and the user's create) waits for it, not for the log and metrics
            await _respond(send, 200, orjson.dumps(answer))
        finally:
            operation = req.operation if req.operation in OPERATIONS else "unknown"  # metric labels stay few
            state.metrics.observe(operation, result, elapsed)
            review_log.write("review", "info", {
                "uid": req.uid, "namespace": req.namespace, "name": req.name, "operation": operation,
                "kind": req.kind.kind, "dryRun": req.dryRun, "outcome": result,
                "warnings": len(verdict.warnings) if verdict else 0, "duration_ms": round(elapsed * 1000, 3),
            })


def create_app(state: ServerState) -> WebhookApp:
    """The application: a FastAPI app behind a raw-ASGI `/mutate` route.

    FastAPI is the application (health, readiness, metrics and whatever comes
    next are ordinary routes); only POST /mutate, which every annotated
    InferenceService write waits for, is answered before it by `WebhookApp`
    without the framework's per-request machinery. The state's metrics get the
    reload counters, certificate expiry and cache state of the parts present.
    """
    metrics = state.metrics

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_watch_files(state))]
        if state.cluster is not None and state.audit_interval > 0:
            tasks.append(asyncio.create_task(_audit_periodically(state)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz() -> Response:
        if state.ready():
            return Response(b'{"status":"ready"}', media_type=JSON)
        return Response(b'{"status":"not ready"}', status_code=503, media_type=JSON)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    if state.policy is not None:
        policy = state.policy
        metrics.counter("ep_webhook_policy_reloads_total", "Policy reloads since start.",
                        lambda: float(policy.reloads))
        metrics.counter("ep_webhook_policy_reload_failures_total",
                        "Policy changes rejected as invalid (the last good policy stays).",
                        lambda: float(policy.failures))
    if state.cluster is not None:
        cluster = state.cluster
        metrics.gauge("ep_webhook_cluster_cache_synced", "1 when namespace, runtime and claim-template caches have listed once.",
                      lambda: 1.0 if cluster.synced() else 0.0)
        metrics.counter("ep_webhook_cluster_watch_errors_total", "Failed list/watch calls to the API server.",
                        lambda: float(sum(c.errors for c in cluster.caches)))
    if state.reports is not None:
        _report_metrics(metrics, state.reports)
    if state.reloader is not None:
        reloader = state.reloader
        metrics.gauge("ep_webhook_certificate_not_after_seconds",
                      "Expiry of the serving certificate, Unix time.", lambda: reloader.not_after)
        metrics.counter("ep_webhook_certificate_reloads_total",
                        "Serving certificate reloads since start.", lambda: float(reloader.reloads))
        metrics.counter("ep_webhook_certificate_reload_failures_total",
                        "Certificate changes that could not be loaded.", lambda: float(reloader.failures))
    return WebhookApp(state, app)


def _report_metrics(metrics: Metrics, reports: ReportWriter) -> None:
    metrics.info("ep_webhook_audit_report_api", "The API the audit's policy reports are written in (none: no reports).",
                 "api", lambda: reports.api_name)
    metrics.gauge("ep_webhook_audit_reports", "Policy reports the webhook keeps (one per namespace with audited objects).",
                  lambda: float(reports.reports))
    metrics.counter("ep_webhook_audit_report_failures_total",
                    "Report API calls (discovery, list, create, replace, delete) that failed.",
                    lambda: float(reports.failures))


async def _watch_files(state: ServerState) -> None:
    """Poll the certificate and policy files; both reload in place."""
    while True:
        await asyncio.sleep(state.reload_interval)
        for watched in (state.reloader, state.policy):
            if watched is None:
                continue
            try:
                watched.check()
            except Exception:  # keep watching whatever happens to one check
                logging.getLogger("webhook.reload").exception("file check failed")


def audit_once(state: ServerState) -> dict[tuple[str, str, str], int]:
    """One audit of the watched objects with the current policy; the counts go to the metrics."""
    from webhook.admission import audit

    assert state.cluster is not None
    cluster = state.cluster
    policy = state.policy.value if state.policy else DEFAULT
    findings = audit.run(cluster.objects(), policy, cluster.labels, cluster.runtimes_for, cluster.claim_templates_for,
                         cluster.llm_configs_for)
    counts = audit.counts(findings)
    finished = time.time()
    state.metrics.audited(counts, finished)
    if state.reports is not None:
        state.reports.write(findings, int(finished))
    totals: dict[str, int] = {r: sum(n for (_, _, res), n in counts.items() if res == r) for r in audit.RESULTS}
    audit_log = logging.getLogger("webhook.audit")
    for f in findings:
        if f.result == "error":
            audit_log.error("audit failed on one object", extra={"fields": {
                "namespace": f.namespace, "kind": f.kind, "name": f.name, "reason": f.message}})
    audit_log.info("audit finished", extra={"fields": {"objects": len(findings), **totals}})
    if state.audit_target is not None:
        target = show(state.audit_target)
        differing = audit.run(cluster.objects(), policy, cluster.labels, cluster.runtimes_for,
                              cluster.claim_templates_for, cluster.llm_configs_for, state.audit_target)
        state.metrics.upgrade_audited(audit.counts(differing), target)
        audit_log.info("upgrade audit finished", extra={"fields": {"target": target, "differing": len(differing)}})
    return counts


async def _audit_periodically(state: ServerState) -> None:
    """Audit the watched objects every `audit_interval` seconds, once the caches have listed."""
    assert state.cluster is not None
    cluster = state.cluster
    audit_log = logging.getLogger("webhook.audit")
    loop = asyncio.get_running_loop()
    warned = False
    while True:
        if cluster.synced() and cluster.workloads_synced():
            try:
                await loop.run_in_executor(None, audit_once, state)
            except Exception:  # an audit that fails is logged and tried again next time
                audit_log.exception("audit failed")
            await asyncio.sleep(state.audit_interval)
            continue
        forbidden = cluster.workloads_forbidden()
        if forbidden and not warned:
            audit_log.warning(
                "audit waits: the API server refuses to list these; grant get/list/watch on them or set "
                "--audit-interval 0", extra={"fields": {"resources": forbidden}})
            warned = True
        await asyncio.sleep(1.0)
