"""Type stubs for slubcy.slub (Cython): SLUB itself is C-level (cimport
slub.pxd); its statistics enum is slubcy.types.stat_item."""
