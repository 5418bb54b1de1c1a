"""Reliability tests use PostgreSQL alone with real service processes, like the replica tests."""

from tests.replicas.test_two_processes import api, database_url

__all__ = ["api", "database_url"]
