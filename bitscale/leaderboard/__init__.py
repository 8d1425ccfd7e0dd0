"""Rendering and analysing results: Table-2 tables, bit budgets, scaling-law fits, plots, the HTML
page, the paper's published rows, and the CI regression gate.

Every view starts from :func:`bitscale.leaderboard.results.load_results` (one read of the store)
and, for the full set, :func:`bitscale.leaderboard.report.build_report`.
"""
