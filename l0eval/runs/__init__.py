"""Runners: one family end to end (toy families trained here; families of loaded SAEs)."""
