"""adapters.drivers."""
