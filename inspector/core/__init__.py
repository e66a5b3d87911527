"""The engine: images to features, scores and anomaly maps. No Qt imports here."""
