"""Built-in quantizers, each a plugin module registered through ``register_quantizers``."""
