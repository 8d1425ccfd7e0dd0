"""The store's default URL, importable without SQLAlchemy (every command's ``--store`` help shows it)."""

DEFAULT_URL = "sqlite:///bitscale.db"
