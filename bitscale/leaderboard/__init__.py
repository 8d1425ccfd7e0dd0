"""Rendering results: Table-2-style tables (tabulate), and later plots and the HTML page."""
