"""Test support: the TF Serving contract stand-in, hostile requests."""
