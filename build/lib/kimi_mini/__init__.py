"""kimi_mini: reinforcement learning for reasoning language models, after Kimi k1.5 (arXiv 2501.12599).

The package the book's chapters build, one module per idea.
"""

__version__ = "0.1.0"
