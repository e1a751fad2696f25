"""The approval core: domain models, state machine, rules, price math, use cases, persistence."""
