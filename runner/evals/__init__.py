"""Assertions over a workflow's outputs (issue 24): each ``assert:`` list checked after a run or a dataset row
(:mod:`.evaluate`), the verdicts added up over the rows with their thresholds (:mod:`.summary`), and the
judge of ``llm-rubric`` (:mod:`.judge`)."""
