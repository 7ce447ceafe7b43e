"""Conversions between adapterspec modules and other libraries' layers (peft only imported where used)."""
