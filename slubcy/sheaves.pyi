"""Type stubs for slubcy.sheaves (Cython): Linux 7.0's percpu sheaves and
barns are C-level only (cimport sheaves.pxd); nothing is visible from Python."""
