"""Type stubs for slubcy.lifecycle (Cython): slub_machine_init/release are
C-level (cimport lifecycle.pxd); nothing is visible from Python."""
