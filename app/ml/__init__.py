"""The training engine: config, datasets, stacked dropout MLP, trainer, metrics, summaries.

Imports torch, NumPy and scikit-learn, never the web or the database: it can be read and run
alone (`python -m app train CONFIG.json`).
"""
