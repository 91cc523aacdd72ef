"""``python -m lockgate.gateway``: run the gateway (see :func:`lockgate.gateway.app.main`)."""

from lockgate.gateway.app import main

if __name__ == "__main__":
    raise SystemExit(main())
