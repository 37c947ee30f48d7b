"""Reference models: float64 exact EventProp and the bit-accurate fixed-point core model."""
