"""The audit trail: one record per API call, delivery attempt and operator action (S14-S17)."""
