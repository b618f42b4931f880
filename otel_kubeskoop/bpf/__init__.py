# SPDX-License-Identifier: Apache-2.0
"""eBPF support: load the objects built from ``bpf/`` with the system libbpf.

- :mod:`.loader`: ``BPFObject`` (open, settings, load, attach, close)
- :mod:`.attach`: attach plans, read from program names and sections; choosing per kernel
- :mod:`.features`: which attach points the running kernel offers
- :mod:`.maps`, :mod:`.ringbuf`: a loaded map, a ring-buffer consumer
- :mod:`.libbpf`: the ctypes binding to ``libbpf.so.1``
- :mod:`.btf`: BTF through libbpf (kernel enum names, struct layouts, an object's types)
- :mod:`.contract`, :mod:`.codegen`: the kernel <-> user contract read from each built object's
  BTF and written as Python into :mod:`.generated` (``make -C bpf``); :mod:`.spec` describes it
- :mod:`.records`: decoding ring-buffer records through the generated mirrors
- :mod:`.objects`: where the packaged ``.bpf.o`` files are
- :mod:`.selftest`: the selftest object, which checks the whole path on a node
- :mod:`.tracefs`: mount tracefs for classic tracepoints
"""
