"""The engine's operations: backup, restore, verify's helpers, check, reclaim, recovery."""
