"""Domain events: what changed, announced through the transactional outbox."""
