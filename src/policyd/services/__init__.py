"""Plain-Python services: each owns its writes and their audit records."""
