"""Type stubs for slubcy.policies.keep (Cython)."""
from slubcy.policies.base import Policy

class KeepPolicy(Policy): ...
