"""Pure statistics for the fidelity report (no Dagster): agreement of the reconstruction with
the vendor's book rows and the golden recording, sequence and origin-time integrity
(``agreement``, a package with one module per comparison), two-sample Kolmogorov-Smirnov tests
and power-law tails (``distributions``), and the figures (``plots``)."""
