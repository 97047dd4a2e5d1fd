"""`cofc build`: the loop (run.py), the stages (stages.py), their cache (cache.py), and the report (report.py)."""
