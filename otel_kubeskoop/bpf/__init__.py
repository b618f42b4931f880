# SPDX-License-Identifier: Apache-2.0
"""eBPF support: load the objects built from ``bpf/`` with the system libbpf (DESIGN section 6).

- :mod:`.loader`: ``BPFObject`` (open, settings, attach plans, load, attach, maps, ring buffers)
- :mod:`.libbpf`: the ctypes binding to ``libbpf.so.1``
- :mod:`.btf`: a pure-Python BTF reader (kernel enum names, object layouts)
- :mod:`.layouts`: ctypes mirrors of the kernel <-> user types in ``bpf/*.h``
- :mod:`.objects`: where the packaged ``.bpf.o`` files are
- :mod:`.selftest`: the selftest object, which checks the whole path on a node
- :mod:`.tracefs`: mount tracefs for classic tracepoints
"""
