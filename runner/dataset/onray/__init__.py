"""Dataset batches on Ray (issue 18): the driver (driver.py), the workers (worker.py), the cluster-wide rate
budget (budget.py). Nothing here is imported unless ``--executor ray`` is given; Ray itself only by the driver."""
