"""The tier policy: a declarative file, its validating loader and the engine that applies it.

>>> from streams.policy import load_policy, PolicyEngine
>>> engine = PolicyEngine(load_policy())
"""

from .engine import SECRET_ENV, PolicyEngine, Window
from .errors import PolicyError
from .loader import DEFAULT_POLICY_FILE, load_policy, parse_policy
from .model import FeedPolicy, FieldRule, Policy, RecordRule, TierRule

__all__ = [
    "DEFAULT_POLICY_FILE",
    "SECRET_ENV",
    "FeedPolicy",
    "FieldRule",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "RecordRule",
    "TierRule",
    "Window",
    "load_policy",
    "parse_policy",
]
