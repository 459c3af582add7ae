"""Shared vocabulary: instants, amounts, prose formats, slotted dataclasses."""
