"""Model families (adapters), teachers, data sets, and the modules shared by every family."""
