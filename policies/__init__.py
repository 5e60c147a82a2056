"""Dead-cache policies: one small module each, and the registry.

Built-in policies and third-party ones are found the same way, through the
`slubcy.policies` entry-point group (a name -> a Policy subclass).  A spec is
"name" or "name:option" (e.g. "barrier:sync", "reap:percpu:20ms").
"""
from importlib import import_module
from importlib.metadata import entry_points

BUILTIN = {
    "keep": "slubcy.policies.keep:KeepPolicy",
    "naive": "slubcy.policies.naive:NaivePolicy",
    "barrier": "slubcy.policies.barrier:BarrierPolicy",
    "reparent": "slubcy.policies.reparent:ReparentPolicy",
    "reap": "slubcy.policies.reap:ReapPolicy",
    "objcg": "slubcy.policies.objcg:ObjcgPolicy",
}
GROUP = "slubcy.policies"


def _load(target):
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def registry():
    """{name: Policy class}: the built-ins, then entry points (which may add
    names; a built-in name is not replaced)."""
    out = {name: target for name, target in BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        out.setdefault(ep.name, ep.value)
    return out


def available():
    return list(registry())


def get_policy(spec, **kwargs):
    """A new Policy instance from "name" or "name:option"."""
    if not isinstance(spec, str) or not spec:
        raise ValueError("a policy spec is a non-empty string such as 'barrier:sync'")
    name, _, option = spec.partition(":")
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown policy {name!r}: one of {', '.join(reg)}")
    cls = _load(reg[name])
    return cls(option or None, **kwargs)


def compare_specs():
    """The specs `slubcy compare` runs by default: every registered policy,
    or each of its `variants` when its class lists some (reap: reap:ipi and
    reap:percpu)."""
    out = []
    for name, target in registry().items():
        variants = getattr(_load(target), "variants", None) or ()
        out.extend([f"{name}:{v}" for v in variants] or [name])
    return out


def describe_all():
    """describe() of every spec compare_specs() lists."""
    rows = []
    for spec in compare_specs():
        p = get_policy(spec)
        rows.append(p.describe())
    return rows
