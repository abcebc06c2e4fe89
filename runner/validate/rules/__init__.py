"""Semantic checks on a workflow, each problem with a stable rule id (:mod:`runner.validate.rules.catalog`).

Run after the schema passed, on the records plus the YAML document (for exact positions of values and
of names inside templates). ``secret_diagnostics`` runs on the document alone, before the schema.
"""
