"""adapters.engines."""
