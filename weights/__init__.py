"""Shipped model weights (package data: cls.pt, reg.pt, README.md model card)."""
