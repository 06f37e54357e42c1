"""PII entity type names, as Presidio spells them: the one list every module shares."""

from __future__ import annotations

PERSON = "PERSON"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
US_SSN = "US_SSN"
CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
IP_ADDRESS = "IP_ADDRESS"
LOCATION = "LOCATION"
DATE_TIME = "DATE_TIME"
URL = "URL"

#: The entity types this tool plants, detects and audits by default.
DEFAULT_ENTITIES: tuple[str, ...] = (
    PERSON,
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    US_SSN,
    CREDIT_CARD,
    IBAN_CODE,
    IP_ADDRESS,
    LOCATION,
    DATE_TIME,
)
