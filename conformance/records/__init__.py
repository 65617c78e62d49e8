"""conformance.records.behaviours."""
