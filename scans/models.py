"""Models of the scans feature (see SPEC)."""
