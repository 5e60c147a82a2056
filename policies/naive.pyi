"""Type stubs for slubcy.policies.naive (Cython)."""
from slubcy.policies.base import Policy

class NaivePolicy(Policy): ...
