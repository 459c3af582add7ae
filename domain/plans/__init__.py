"""Plans and billing periods: the catalog, an account's plan, period arithmetic."""
