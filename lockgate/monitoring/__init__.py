"""Monitoring: what closes the loop after a model is served.

- :mod:`~lockgate.monitoring.drift`: the drift engine (PSI, KS, Jensen-Shannon), pure numpy.
- :mod:`~lockgate.monitoring.drift_report`: live traffic vs the champion's training data.
- :mod:`~lockgate.monitoring.feedback`: delayed labels joined to the prediction log.
- :mod:`~lockgate.monitoring.mutations`: fingerprints of a feature service and their changes.
- :mod:`~lockgate.monitoring.triggers`: the retrain policies and their pure state machine.
"""
