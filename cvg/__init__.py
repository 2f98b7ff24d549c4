"""cvg: Cascaded Video Generation (Castrejon, Ballas, Courville)."""

__version__ = "0.1.0"
