"""The repository format: config, packs, index, manifests, locks, the codec."""
