"""Pure rendering of calculation messages into abstract iptables chains (no I/O).

`model` is the vocabulary, `naming` every kernel name, `policy`/`endpoints`/`dispatch`/
`static` the renderers; `calico.dataplane.drivers` writes the result to the kernel.
"""
