"""Built-in plugins: model families, quantizers and losses, registered through the same hooks as third-party ones."""
