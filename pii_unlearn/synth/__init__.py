"""Synthetic PII text (Faker) and the demo victim model builder."""
