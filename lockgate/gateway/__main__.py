"""``python -m lockgate.gateway``: run the gateway (see :func:`lockgate.gateway.cli.main`)."""

from lockgate.gateway.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
