"""The fs master role: export snapshot, export and mount registries, panel, access control, transfers."""
