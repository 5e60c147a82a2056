# cython: language_level=3
"""The Python side of slubcy/types.pxd, the core's type declarations: the
classes of its cpdef enums (stat_item, the kernel's enum stat_item in its
order).  Nothing else: the structs have no Python face."""
