"""The reliability suite: crashes, injected faults, hostile input and replicas (docs/reliability.md)."""
