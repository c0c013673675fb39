"""The token-and-cost engine: fill missing token counts, price the call, keep the run's running totals, budgets."""
