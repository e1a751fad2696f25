"""The approval core: domain models, the state machine, rules, price math, use cases and persistence."""
