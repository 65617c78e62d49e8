"""adapters.sandbox."""
