"""Pure ASGI middleware: each module has one job."""
