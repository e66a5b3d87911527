"""Inspection spread over many machines (Ray). Optional: needs the ``cluster`` extra."""
