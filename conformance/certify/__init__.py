"""conformance.certify.engine."""
