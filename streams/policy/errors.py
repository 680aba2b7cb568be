"""The one error the policy package raises."""

from __future__ import annotations


class PolicyError(ValueError):
    """A bad policy file, or a request the policy does not allow; the message says which and where."""
