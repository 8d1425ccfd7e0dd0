"""Built-in model families (VAR, ...), each a plugin module with a ``register_models`` hook."""
