"""Data sets that ship offline (no downloads at run time)."""
