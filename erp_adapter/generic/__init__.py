"""The generic adapter: any ERP that speaks CONTRACT sections 2 and 3."""
