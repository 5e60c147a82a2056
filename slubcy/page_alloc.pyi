"""slubcy.page_alloc (Cython): C-level only (cimport its .pxd); nothing Python-visible."""
