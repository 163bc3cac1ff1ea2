"""Declares no job type."""
