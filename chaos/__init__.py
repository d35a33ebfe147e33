"""Chaos experiments against the NEUROS compose stack whose verdict is the observability.

Stdlib only, so ``chaos/run-chaos-test.sh`` runs with any ``python3`` >= 3.11.
"""
