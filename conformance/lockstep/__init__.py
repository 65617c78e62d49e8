"""conformance.lockstep."""
