"""The operator's view of every partition: the coverage calendar."""
