"""conformance.containers.machine."""
