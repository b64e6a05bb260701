"""Layer 3: the decision. Annotations and policy in, a planned edit, a JSON patch and an undo record out; pure, no I/O.

Knows no KServe kind: an adapter (`webhook.kserve`) reads an object into a `workload.Workload`.
"""
