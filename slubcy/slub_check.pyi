"""Type stubs for slubcy.slub_check (Cython): the free checks, py_live and
validate() are C-level (cimport slub_check.pxd); nothing is visible from Python."""
