"""Calico's label selector language, with exactly libcalico-go's semantics, and a label index.

Typical use::

    from calico.selector import parse, SelectorError

    sel = parse('app == "web" && has(tier)')
    sel.evaluate({"app": "web", "tier": "x"})  # True
    str(sel)  # '(app == "web" && has(tier))', Calico's canonical form
    sel.unique_id()  # 's:...', Calico's IP-set ID hash

Modules: ``tokenizer`` and ``parser`` (text to tree), ``ast`` (tree nodes), ``restrictions``
(necessary label conditions), ``selector`` (the ``Selector`` value type), ``index`` and
``linear`` (optimised and naive selector/item match indexes).  The package does no I/O.
"""

from calico.selector.ast import Node
from calico.selector.errors import SelectorError
from calico.selector.index import LabelIndex, MatchCallback
from calico.selector.linear import LinearScanLabelIndex
from calico.selector.restrictions import LabelRestriction
from calico.selector.selector import ALL, Selector, make_unique_id, normalise, parse, validate

__all__ = [
    "ALL",
    "LabelIndex",
    "LabelRestriction",
    "LinearScanLabelIndex",
    "MatchCallback",
    "Node",
    "Selector",
    "SelectorError",
    "make_unique_id",
    "normalise",
    "parse",
    "validate",
]
