"""The plan: workflow records compiled into a graph of nodes with compiled templates (:mod:`.compile`), and
that graph drawn for people (:mod:`.graph`, ``runner graph``)."""
