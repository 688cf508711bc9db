"""Model cards, small model factories and training recipes of the default zoo."""
