"""Calibration (paper §III-C2): progressive boosting distillation, the aggregator, joint fine-tuning."""
