"""Validation: the semantic rules (:mod:`runner.validate.rules`), each problem a located diagnostic, and the
formatters that print them (:mod:`runner.validate.formats`); :mod:`runner.validate.check` runs them on a file.
"""
