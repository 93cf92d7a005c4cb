"""Bridge to AstraSim: Chakra ET and AstraSim configs in and out, run and compare.

Empty for now: the import/export and cross-check land with the Chakra/AstraSim issue.
"""
