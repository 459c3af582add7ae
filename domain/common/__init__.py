"""Shared vocabulary: instants, amounts, slotted dataclasses."""
