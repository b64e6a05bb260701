"""Layer 7: the Kubernetes API: watched caches, paged listing for the audit, and the self-managed certificate
and webhook configuration."""
