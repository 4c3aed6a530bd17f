"""The sampler: reads a source at a fixed interval and publishes immutable snapshots."""
