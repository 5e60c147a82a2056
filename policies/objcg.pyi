"""Type stubs for slubcy.policies.objcg (Cython)."""
from slubcy.policies.base import Policy

class ObjcgPolicy(Policy): ...
