"""NEUROS agent: biometric ingestion, health KPIs and protocol advice."""
