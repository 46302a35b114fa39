"""Reports: what one run produced (run_summary) and, later, sweep tables and figures."""
