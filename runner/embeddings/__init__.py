"""Embeddings: the offline hashing embedder, the file cache and long-term vector memory.

Their settings are records of :mod:`runner.config.embeddings`; numpy is imported by these modules only, so
a workflow without embeddings or memory never pays for it.
"""
