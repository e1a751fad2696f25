"""`approval-bridge bench`: scenarios against a real `run` process, each beside its ceiling."""
