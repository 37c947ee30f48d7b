"""Tests of the host software (evcore.sw)."""
