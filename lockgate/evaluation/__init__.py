"""Evaluation: challenger vs champion on the gold set, and the gate that judges it.

- :mod:`~lockgate.evaluation.stats`: bootstrap intervals, paired tests, calibration, slices.
- :mod:`~lockgate.evaluation.report`: the evaluation report the gate reads.
- :mod:`~lockgate.evaluation.gate`: the gate policy (:class:`~lockgate.Gate`) and its verdicts.
- :mod:`~lockgate.evaluation.plots`: PNG plots of an evaluation and of a drift report.
"""
