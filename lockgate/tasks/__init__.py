"""The task catalog (binary, multiclass, regression) and its metrics in vectorised numpy.

- :mod:`~lockgate.tasks.catalog`: which metrics each task reports, which way each is better.
- :mod:`~lockgate.tasks.metrics`: the metrics themselves.
"""
