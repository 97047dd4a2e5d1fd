"""`cofc build`: the stages (stages.py), their cache (cache.py), and the report (report.py)."""
