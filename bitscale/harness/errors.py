"""Errors a user can act on. The CLI prints them on one line and exits with code 2."""


class BitscaleError(Exception):
    """Bad input: says what was wrong, where, and what to do. Exit code 2, nothing written."""

    exit_code = 2


class ConfigError(BitscaleError):
    """An experiment file or command-line option that cannot be used as given."""


class PluginError(BitscaleError):
    """A plugin that cannot be loaded, or a name that no plugin registered."""
