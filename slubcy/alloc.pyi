"""Type stubs for slubcy.alloc (Cython): the one allocation and free entry is
C-level only (cimport alloc.pxd); nothing is visible from Python."""
