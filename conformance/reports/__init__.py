"""conformance.reports."""
