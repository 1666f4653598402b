"""Results out: metrics, tables, figures, cost, provenance and the run report."""
