"""Validation against the twin's truth: metrics, reports."""
