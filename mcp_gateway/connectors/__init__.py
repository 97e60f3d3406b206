"""Connector kinds, one folder each (the house issue builds the registry here)."""
