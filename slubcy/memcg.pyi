"""slubcy.memcg (Cython): C-level only (cimport its .pxd); nothing Python-visible."""
