"""Evaluation: metrics, statistics over seeds and tasks, and reports."""
