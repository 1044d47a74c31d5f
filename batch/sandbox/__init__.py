"""The embedded sandbox: a local iamport stand-in with PAYCO orders, faults and an audit.

- api.py: the behaviour (tokens, orders, faults, audit), with no HTTP in it;
- app.py: the ASGI app that serves it on uvicorn;
- server.py: serving it in the foreground or from a background thread.

This package file imports nothing, so that `batch.sandbox.api` stays cheap to import for
code that needs only its constants; the server stack loads with `batch.sandbox.server`.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
