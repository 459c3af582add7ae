"""Plans and billing periods: the catalog on offer and period arithmetic."""
