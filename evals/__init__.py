"""Evaluation suite: deterministic scoring of records against gold fixtures."""
