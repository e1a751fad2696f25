"""The reliability suite: crashes, faults, hostile input and replicas (docs/reliability.md)."""
