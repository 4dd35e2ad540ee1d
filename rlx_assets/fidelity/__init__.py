"""The fidelity report of a partition: ``report.build_fidelity_report`` (pure, writes
``fidelity.json``, ``fidelity.md`` and PNG plots) over ``inputs``, ``metrics``, ``bookkeeping``,
``plot_files``, ``markdown``, ``discrepancies`` and ``provenance``, and its thresholds
(``thresholds``, overridable by ``RLX_FIDELITY_*``)."""
