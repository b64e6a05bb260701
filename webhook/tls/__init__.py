"""Layer 6, the first shell: certificates on disk, the server's TLS context, and reloading files that change."""
