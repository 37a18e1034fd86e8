"""PII detection and keyed pseudonyms: ``detector.PiiDetector`` combines Presidio's pattern
recognizers, spaCy NER and thaw's own rules (``rules``: structured types, dates, names;
``addresses``: streets and postal codes)."""
