"""Models of the backups feature (see SPEC)."""
