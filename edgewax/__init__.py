"""edgewax: declarative edge-ML stream pipelines compiled into Bytewax dataflows."""

__version__ = "0.1.0"
