"""The planner (paper §III-B, §III-C1): specs, the objective Ψ and constraints C1–C6, DeBo, and
which teacher units each sub-model takes. Pure and torch-free: numbers in, a policy out."""
