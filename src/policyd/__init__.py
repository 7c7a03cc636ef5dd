"""policyd: open, policy-as-code entitlement management."""

__version__ = "0.1.0"
