"""Layer 8: the HTTPS server: the ASGI app, uvicorn, metrics and logs."""
