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


GENERATIONS = ("4.0", "7.0")


def split_generation(spec, default="4.0"):
    """'objcg@7.0' -> ('objcg', '7.0'); 'barrier:sync' -> ('barrier:sync',
    default).  The allocator generation a run uses (Machine(slub=...)):
    checked here, with the policy, so a bad pair fails before any run --
    a policy that retires per-memcg caches does not run on 7.0."""
    if not isinstance(spec, str):
        raise ValueError("a run spec is a string such as 'objcg' or 'objcg@7.0'")
    name, at, gen = spec.partition("@")
    gen = gen if at else default
    if gen not in GENERATIONS:
        raise ValueError(f"unknown allocator generation {gen!r} in {spec!r}: one of "
                         f"{', '.join(GENERATIONS)}")
    if gen != "4.0" and get_policy(name).per_memcg_caches:
        raise ValueError(f"{name!r} retires per-memcg caches, which Linux 5.9 removed: it "
                         f"does not run on slub {gen} (sheaves)")
    return name, gen


def with_generations(specs, generations):
    """Each spec under each generation it runs on, generation by generation
    ('objcg', 'naive' x ('4.0', '7.0') -> objcg, naive, objcg@7.0); a spec
    that names its generation is kept as it is."""
    out = []
    for gen in generations:
        for spec in specs:
            if "@" in spec:
                if spec not in out:
                    out.append(spec)
                continue
            name = spec if gen == "4.0" else f"{spec}@{gen}"
            if gen == "4.0" or not get_policy(spec).per_memcg_caches:
                out.append(name)
    return out


def describe_all():
    """describe() of every spec compare_specs() lists."""
    rows = []
    for spec in compare_specs():
        p = get_policy(spec)
        rows.append(p.describe())
    return rows
