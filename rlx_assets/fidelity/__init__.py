"""The fidelity report of a partition: ``report.build_fidelity_report`` (pure, writes
``fidelity.json``, ``fidelity.md`` and PNG plots) and its thresholds (``thresholds``,
overridable by ``RLX_FIDELITY_*``)."""
