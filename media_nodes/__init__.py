"""Media nodes (LiveKit SFUs): registry, health, placement."""
