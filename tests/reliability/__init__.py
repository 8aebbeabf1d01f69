"""Reliability tests (issue 5): R4 bad input, R5 secrets, and the rest."""
