"""Latency tables (the model pool), the predictor fitted on them, and roofline estimates."""
