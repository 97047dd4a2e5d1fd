"""What the planner learns from the teacher: the importance of its units and the validation-loss
proxy of eq. 7 (both run the teacher, so both need torch)."""
