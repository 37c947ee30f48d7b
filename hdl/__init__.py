"""Amaranth descriptions of the event core."""
