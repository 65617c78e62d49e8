"""conformance.generation."""
