"""Type stubs for slubcy.policies.reparent (Cython)."""
from slubcy.policies.base import Policy

class ReparentPolicy(Policy): ...
