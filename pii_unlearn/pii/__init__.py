"""PII detection (Presidio, offline), token masks and anonymised/faked twins."""
