"""The gateway: the KServe v2 front door before Triton (routing, limits, prediction log).

Run it with ``python -m lockgate.gateway`` (see :mod:`lockgate.gateway.app`).
"""
