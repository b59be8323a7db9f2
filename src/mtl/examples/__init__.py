"""Ready examples on real data that a dependency already carries on disk (nothing downloaded)."""
