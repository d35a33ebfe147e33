"""Tests of the agent: the neuros package, its API, store, telemetry and image."""
