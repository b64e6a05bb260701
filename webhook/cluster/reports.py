"""Writing the audit's policy reports to the API server: which API, and create / replace / delete.

Each audit ends with `ReportWriter.write`: the API to write is looked up by
discovery (`GET /apis/<group>/<version>`, which every authenticated user may
read: the `system:discovery` ClusterRole), so a CRD installed or removed later
is picked up at the next audit without a restart. Then one list of the reports
the webhook wrote before (label app.kubernetes.io/managed-by=vllm-ep-webhook,
all namespaces), and per namespace: create the report when missing, replace it
when its results changed, leave it when not; delete the reports of namespaces
that have no audited object left. RBAC this needs on the report kind: list,
create, update, delete (no get, no watch).

Failures never stop the audit: each refused call is counted and logged, and the
next audit tries again. With several replicas each writes the same content; a
conflict (409) means another replica wrote first and is not a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from webhook.admission.audit import Finding
from webhook.admission.reports import APIS, CHOICES, MANAGED_BY, REPORT_NAME, ReportApi, by_namespace, report, \
    same_content

log = logging.getLogger("webhook.audit")


def served(api_client: Any, api: ReportApi) -> bool:
    """True when the API server serves `api`'s namespaced report kind (its CRD is installed and established).

    Raises the client's ApiException for anything but 404 (the group/version is not served).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        resources = client.CustomObjectsApi(api_client).get_api_resources(api.group, api.version)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return any(r.name == api.plural for r in (resources.resources or []))


class ReportWriter:
    """Keeps one report per audited namespace, in the API chosen by `choice` (one of CHOICES).

    After each `write`: `api` is the API written (None: none), `reports` how many reports the webhook
    keeps, `failures` the API calls refused or failed since start.
    """

    def __init__(self, api_client: Any, choice: str = "auto") -> None:
        if choice not in CHOICES:
            raise ValueError(f"report API {choice!r}: use one of {', '.join(CHOICES)}")
        self.api_client = api_client
        self.choice = choice
        self.api: ReportApi | None = None
        self.reports = 0
        self.failures = 0
        self._said: tuple[str, str | None] | None = None

    @property
    def api_name(self) -> str:
        """The API written, as apiVersion, or "none"."""
        return self.api.api_version if self.api else "none"

    def _say(self, message: str, api: ReportApi | None, level: int = logging.INFO) -> None:
        """Log which API is written when that changes (not at every audit)."""
        said = (message, api.api_version if api else None)
        if said != self._said:
            self._said = said
            log.log(level, message, extra={"fields": {"api": api.api_version if api else "none",
                                                      "choice": self.choice}})

    def resolve(self) -> ReportApi | None:
        """The API to write now: the forced one if served, else (auto) the first of APIS served, else None."""
        if self.choice == "none":
            self._say("audit reports are off (--audit-reports none)", None)
            return None
        candidates = [a for a in APIS if self.choice in ("auto", a.name)]
        for api in candidates:
            if served(self.api_client, api):
                self._say("audit reports are written", api)
                return api
        wanted = " or ".join(a.api_version for a in candidates)
        self._say(f"no audit reports: the API server does not serve {wanted} (install its CRD)", None,
                  logging.WARNING)
        return None

    def write(self, findings: Iterable[Finding], seconds: int) -> None:
        """Make the reports say what `findings` say (`seconds`: the audit's Unix time, for new results)."""
        from kubernetes.client.exceptions import ApiException

        try:
            api = self.resolve()
        except ApiException as e:
            self.failures += 1
            log.warning("report API discovery failed", extra={"fields": {"status": e.status}})
            return
        except Exception as e:  # noqa: BLE001 - unreachable API server and friends: next audit
            self.failures += 1
            log.warning("report API discovery failed", extra={"fields": {"error": type(e).__name__}})
            return
        self.api = api
        if api is None:
            self.reports = 0
            return
        self._sync(api, by_namespace(findings), seconds)

    def _sync(self, api: ReportApi, wanted: dict[str, list[Finding]], seconds: int) -> None:
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api_client)
        target = (api.group, api.version)
        stored_list = self._call("list", "", lambda: custom.list_cluster_custom_object(
            *target, api.plural, label_selector=f"{MANAGED_BY[0]}={MANAGED_BY[1]}"))
        if stored_list is None:
            return
        stored = {item["metadata"]["namespace"]: item for item in stored_list.get("items", [])
                  if item.get("metadata", {}).get("name") == REPORT_NAME}
        kept = 0
        for namespace, findings in wanted.items():
            body = report(api, namespace, findings, seconds)
            old = stored.pop(namespace, None)
            if old is None:
                done = self._call("create", namespace, lambda: custom.create_namespaced_custom_object(
                    *target, namespace, api.plural, body))
            elif same_content(old, body):
                done = old
            else:
                metadata = body["metadata"]
                assert isinstance(metadata, dict)
                metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
                done = self._call("replace", namespace, lambda: custom.replace_namespaced_custom_object(
                    *target, namespace, api.plural, REPORT_NAME, body))
            kept += done is not None
        for namespace in stored:
            self._call("delete", namespace, lambda: custom.delete_namespaced_custom_object(
                *target, namespace, api.plural, REPORT_NAME))
        self.reports = kept

    def _call(self, verb: str, namespace: str, call: Any) -> Any:
        """One API call; a refusal is counted and logged and gives None (a 409 or 404 race is not a failure)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return call() or {}
        except ApiException as e:
            if e.status in (404, 409):  # deleted meanwhile / written by another replica: the next audit reconciles
                log.info("report changed meanwhile", extra={"fields": {"verb": verb, "namespace": namespace,
                                                                        "status": e.status}})
                return {} if verb != "list" else None
            self.failures += 1
            log.warning("report write refused", extra={"fields": {"verb": verb, "namespace": namespace,
                                                                   "status": e.status,
                                                                   "reason": str(e.reason)[:200]}})
        except Exception as e:  # noqa: BLE001 - unreachable API server and friends: next audit
            self.failures += 1
            log.warning("report write failed", extra={"fields": {"verb": verb, "namespace": namespace,
                                                                  "error": type(e).__name__}})
        return None
