"""Models of the catalog feature (see SPEC)."""
