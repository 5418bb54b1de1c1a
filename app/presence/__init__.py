"""Teams presence: one presence subscription per PBX, bulk reads and polling, catch-up."""
